"""Active provider health checks: a token-free request (the vendor's model listing, or what the
adapter's ``health_request`` names) per provider on an interval, recording status and latency."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from gateway.transport import UPSTREAM_EXCEPTIONS, map_exception

if TYPE_CHECKING:
    from gateway.registry import Provider, ProviderRegistry

log = logging.getLogger("llm_gateway.health")


async def check_provider(provider: Provider) -> bool:
    """One check; updates ``provider.health``. True when the vendor answered below 400."""
    req = provider.adapter.health_request()
    health = provider.health
    if req is None:
        return health.status != "unhealthy"
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(provider.config.health_check.timeout_s):
            raw = await provider.transport.send(req)
        if raw.status >= 400:
            error = provider.adapter.parse_error(raw.status, raw.body, raw.headers).message
    except UPSTREAM_EXCEPTIONS as exc:
        error = map_exception(provider.name, exc).message
    except Exception as exc:  # a check must never kill its loop
        error = getattr(exc, "message", type(exc).__name__)
    health.last_checked = time.time()
    health.last_latency_s = time.perf_counter() - started
    health.status = "healthy" if error is None else "unhealthy"
    if error is not None:
        health.last_error = error
    return error is None


class HealthChecker:
    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for provider in self._registry:
            cfg = provider.config.health_check
            if cfg.enabled and provider.adapter.health_request() is not None:
                self._tasks.append(asyncio.create_task(self._loop(provider), name=f"health:{provider.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _loop(self, provider: Provider) -> None:
        interval = provider.config.health_check.interval_s
        while True:
            ok = await check_provider(provider)
            if not ok:
                log.warning("provider %s failed its health check", provider.name)
            await asyncio.sleep(interval)
