"""Configuration reload: generations of the gateway's run-time object.

A ``Gateway`` (``gateway.runtime``) is one *generation*: a config with its plugin manager, hooks,
providers, router and plugin state. The ``Reloader`` (``app[RELOADER]``) holds the current one.
A request takes the current generation once, when it starts, and keeps it to its end, so a reload
never changes a request in flight. ``reload()`` (SIGHUP, ``llm-gateway reload``) reads and
validates the config file again; an invalid file changes nothing. A valid one becomes a new
generation: unchanged providers are carried over (same sessions, circuit and health), plugins
rebuild their state in ``gateway_configure`` on the new generation's own ``web.Application`` and
may carry unchanged state over (``gateway.plugin_manager.carry_over``). A superseded generation is
retired after its last request: ``gateway_shutdown`` gets what it held that no live generation
still holds, and the sessions of its removed or changed providers close.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from aiohttp import web

from gateway.errors import ConfigError
from gateway.health import HealthChecker
from gateway.keys import GATEWAY, REDIS, RELOADER
from gateway.loader import Loaded, load
from gateway.runtime import Gateway

log = logging.getLogger("llm_gateway.reload")
CORE_KEYS = (GATEWAY, REDIS, RELOADER)


class Reloader:
    """The process's generations of the gateway, and its readiness (``ready``, ``draining``)."""

    def __init__(self, app: web.Application, first: Gateway, loaded: Loaded) -> None:
        self.app = app
        self.current = first
        self.live: list[Gateway] = [first]  # the current one and those still draining
        self.path, self.env = loaded.path, loaded.env
        self.results = {"ok": 0, "failed": 0}  # reloads by result, for /metrics
        self.ready = False
        self.draining = False
        self._checker: HealthChecker | None = None
        self._lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    # -- requests -------------------------------------------------------------------------
    def enter(self) -> Gateway:
        """The generation a request runs on, to its end; pair with ``leave``. (The API handler
        does the same inline.)"""
        gw = self.current
        gw.in_flight += 1
        return gw

    def leave(self, gw: Gateway) -> None:
        gw.in_flight -= 1
        if not gw.in_flight and gw is not self.current:
            self.left(gw)

    def left(self, gw: Gateway) -> None:
        """The last request of a superseded generation ended: retire it."""
        if gw.in_flight == 0 and gw is not self.current and gw in self.live:
            self._spawn(self._retire(gw))

    # -- start-up and shutdown (the app's cleanup_ctx) ------------------------------------
    async def start(self) -> None:
        gw = self.current
        await gw.registry.open()
        self._restart_checker()
        await gw.hooks.all("gateway_startup", app=gw.app)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._checker is not None:
            await self._checker.stop()
        await self.settled()  # a reload or retirement under way finishes first
        for gw in list(self.live):  # oldest first; the current one last releases everything left
            await self._retire(gw)

    async def settled(self) -> None:
        """Wait for background work (a signalled reload, retiring generations) to finish."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- reload ---------------------------------------------------------------------------
    def request_reload(self) -> None:
        """For the SIGHUP handler: reload in the background (reloads run one at a time)."""
        self._spawn(self.reload())

    async def reload(self) -> bool:
        """Re-read and validate the config; True when a new generation took over."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            where = self.path if self.path is not None else "the configuration"
            try:
                if self.path is None:
                    raise ConfigError([("", "this gateway was not started from a config file")])
                loaded = await asyncio.to_thread(load, self.path, self.env)
                # The server section is not reloaded (docs/reload.md): keep the running one, whose
                # workers count is the effective one (--workers wins over the file).
                server = self.current.config.server
                loaded = replace(loaded, config=loaded.config.model_copy(update={"server": server}))
                new = await self._build(loaded)
            except ConfigError as exc:
                self.results["failed"] += 1
                log.error("reload: %s is invalid; nothing changed", where)
                for path, message in exc.problems:
                    log.error("reload:   %s: %s", path or "(file)", message)
                return False
            except Exception:
                self.results["failed"] += 1
                log.exception("reload: building the new configuration failed; nothing changed")
                return False
            old, self.current = self.current, new
            self.live.append(new)
            self._restart_checker()
            self.results["ok"] += 1
            log.info("configuration reloaded from %s (%d providers)", where, len(new.registry.providers))
            self.left(old)
            return True

    async def _build(self, loaded: Loaded) -> Gateway:
        gw = Gateway(loaded.config, loaded.pm, previous=self.current)
        app = web.Application()  # this generation's plugin state; never served
        app[GATEWAY], app[RELOADER] = gw, self
        if gw.redis is not None:
            app[REDIS] = gw.redis
        gw.app = app
        try:
            loaded.pm.hook.gateway_configure(config=loaded.config, app=app)
            gw.refresh_hooks()
            gw.previous = None  # carried over what it could; do not keep the chain alive
            await gw.registry.open()
            await gw.hooks.all("gateway_startup", app=app)
        except BaseException:
            await self._release(gw, others=self.live)
            raise
        return gw

    # -- retiring a generation ------------------------------------------------------------
    async def _retire(self, gw: Gateway) -> None:
        if gw not in self.live:
            return
        self.live.remove(gw)
        await self._release(gw, others=self.live)

    async def _release(self, gw: Gateway, others: list[Gateway]) -> None:
        """Shut down what ``gw`` holds that none of ``others`` does: plugin state (through
        ``gateway_shutdown``), provider sessions, then shared-store connections."""
        held = {id(v) for other in others for v in other.app.values()}
        if not others and gw.app is self.app:
            shutdown_app = gw.app  # the served app, exactly as at a plain shutdown
        else:
            shutdown_app = web.Application()
            shutdown_app[GATEWAY] = gw
            for key, value in gw.app.items():
                if key not in CORE_KEYS and id(value) not in held:
                    shutdown_app[key] = value
        await gw.hooks.all_safe("gateway_shutdown", app=shutdown_app)
        providers = {id(p) for other in others for p in other.registry}
        await gw.registry.close(keep=providers)
        if gw.redis is not None and all(other.redis is not gw.redis for other in others):
            await gw.redis.close()

    def _restart_checker(self) -> None:
        old, self._checker = self._checker, HealthChecker(self.current.registry)
        self._checker.start()
        if old is not None:
            self._spawn(old.stop())

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
