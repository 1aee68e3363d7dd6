"""The live dashboard (built-in plugin ``dashboard``): ``GET /ui`` and ``GET /admin/dashboard``.

On when the ``admin`` section is configured (the governance plugin's admin keys guard the data);
without it the plugin stands down and both paths are 404. Each finished request adds to
per-second buffers in memory (``plugins.dashboard.series``): one slot index and a few additions,
no lock, no I/O; totals are added up when a page or a snapshot asks. With ``--workers N`` each
worker also writes its buffers to the workers' shared directory once a second and the answering
worker adds them all up (``plugins.dashboard.shared``).
docs/dashboard.md has the whole design.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from importlib import resources

from aiohttp import web

from gateway import GatewayError, Outcome, RequestContext, StashKey, hookimpl
from gateway.config import GatewayConfig
from gateway.keys import GATEWAY, RELOADER
from gateway.plugin_manager import carry_over, stand_down
from gateway.relay import error_response, json_response
from gateway.transport import Attempt
from plugins.dashboard.series import LiveStats
from plugins.dashboard.shared import WRITE_INTERVAL_S, read_snapshots, shared_dir, write_snapshot
from plugins.dashboard.view import build_view
from plugins.governance import current_governance
from plugins.governance.admin_api import NotFound, admin_route
from plugins.governance.service import Governance
from plugins.metrics_shared import PeriodicFlush

log = logging.getLogger("llm_gateway.dashboard")
# The provider whose stream this request counted as open.
STREAM_OPEN: StashKey[str] = StashKey("dashboard.stream_open")
STATIC = {"": ("index.html", "text/html"), "dashboard.css": ("dashboard.css", "text/css"),
          "dashboard.js": ("dashboard.js", "text/javascript")}
# The page loads its own files only and talks to this gateway only.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
}


class Dashboard:
    """The process's buffers (kept over configuration reloads) and its snapshot writer."""

    def __init__(self) -> None:
        self.stats = LiveStats()
        self.app: web.Application | None = None  # the generation whose registry gives circuit states
        self.directory = shared_dir()
        self.writer = PeriodicFlush(self.write, WRITE_INTERVAL_S) if self.directory else None
        files = resources.files(__name__) / "static"
        self.files = {path: ((files / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}

    def snapshot(self) -> dict[str, object]:
        now = time.time()
        registry = list(self.app[GATEWAY].registry) if self.app is not None else []
        for provider in registry:
            self.stats.provider(provider.name)  # listed from the start, with zeros
        snap = self.stats.snapshot(int(now))
        for provider in registry:
            snap["providers"][provider.name].update(status=provider.health.status, circuit=provider.breaker.state)
        return {**snap, "written": now, "pid": os.getpid()}

    def write(self) -> None:
        assert self.directory is not None
        try:
            write_snapshot(self.directory, self.snapshot())
        except OSError as exc:  # a full or vanished directory: the next second tries again
            log.warning("dashboard: could not share this worker's figures: %s", exc)


DASHBOARD: web.AppKey[Dashboard] = web.AppKey("llm_gateway.dashboard")


def current_dashboard(request: web.Request) -> Dashboard | None:
    live = request.app.get(RELOADER)
    app = live.current.app if live is not None and live.current.app is not None else request.app
    return app.get(DASHBOARD)


async def live_view(request: web.Request, gov: Governance) -> web.Response:
    dashboard = current_dashboard(request)
    if dashboard is None:
        raise NotFound(f"Unknown endpoint: {request.method} {request.path}", code="unknown_endpoint")
    snapshots = [dashboard.snapshot()]
    if dashboard.directory is not None:
        snapshots += await asyncio.get_running_loop().run_in_executor(
            None, read_snapshots, dashboard.directory, os.getpid())
    return json_response(build_view(snapshots))


async def page(request: web.Request) -> web.Response:
    gov, dashboard = current_governance(request), current_dashboard(request)
    found = dashboard.files.get(request.match_info.get("name", "")) if dashboard is not None else None
    if gov is None or gov.admin is None or found is None:
        return error_response(NotFound(f"Unknown endpoint: {request.method} {request.path}", code="unknown_endpoint"))
    body, kind = found
    return web.Response(body=body, content_type=kind, headers=PAGE_HEADERS)


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    if config.section("admin") is None:
        stand_down(app, sys.modules[__name__])  # no admin keys: no dashboard, nothing per request
        return
    dashboard = carry_over(app, DASHBOARD, "process", Dashboard)
    assert dashboard is not None
    dashboard.app = app
    app[DASHBOARD] = dashboard
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/{name}", page)
    app.router.add_get("/admin/dashboard", admin_route(current_governance, live_view))
    app[GATEWAY].pm.register(LiveHooks(dashboard), name="dashboard.live")


@hookimpl
def gateway_startup(app: web.Application) -> None:
    dashboard = app.get(DASHBOARD)
    if dashboard is not None and dashboard.writer is not None:
        dashboard.write()  # the other workers count this one from its start, not a second later
        dashboard.writer.start()


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    dashboard = app.get(DASHBOARD)
    if dashboard is not None and dashboard.writer is not None:
        await dashboard.writer.stop()


class LiveHooks:
    """The request hooks, registered on each configuration generation's plugin manager with the
    process's buffers: a request adds to one ring, a few counters and two sample buffers."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.stats = dashboard.stats

    @hookimpl
    def gateway_upstream_attempt_done(self, ctx: RequestContext, attempt: Attempt, error: GatewayError | None) -> None:
        if error is not None:  # errors are rare: masking here keeps secrets out of memory and files
            stats = self.stats.provider(attempt.provider)
            stats.last_error = ctx.app[GATEWAY].scrubber.scrub(f"{error.status} {error.type}: {error.message}")
            stats.last_error_at = time.time()
        elif attempt.stream:
            self.stats.provider(attempt.provider).streams += 1
            ctx.stash[STREAM_OPEN] = attempt.provider

    @hookimpl
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> None:
        second = int(time.time())
        usage = outcome.usage
        tokens = usage.prompt_tokens + usage.completion_tokens if usage is not None else 0
        cost = outcome.cost_usd or 0.0
        provider = outcome.provider
        if provider is None:
            self.stats.unserved.add(second, outcome.status, tokens, cost)
        else:
            stats = self.stats.providers.get(provider) or self.stats.provider(provider)
            stats.ring.add(second, outcome.status, tokens, cost)
            stats.latency.append(outcome.latency_s)
            if outcome.ttft_s is not None:
                stats.ttft.append(outcome.ttft_s)
        stream = ctx.stash.get(STREAM_OPEN) if outcome.stream else None  # only a stream's attempt opens one
        if stream is not None:
            self.stats.provider(stream).streams -= 1
