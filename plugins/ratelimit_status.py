"""Running the Redis rate-limit backend and showing how it is doing.

``GET /health/limits`` (no client key, like ``/health/providers``) answers where the limits live
and, for Redis, whether they are shared right now or degraded to ``on_store_error``. When the
metrics plugin is on, the same numbers are in ``/metrics``::

    llm_gateway_ratelimit_degraded{policy}            gauge, 1 while Redis is unavailable
    llm_gateway_ratelimit_store_errors_total          counter, Redis errors and timeouts
    llm_gateway_ratelimit_degradations_total          counter, transitions to degraded
    llm_gateway_ratelimit_settles_dropped_total       counter, settles the full queue refused

These are collected from the backend's own counters when scraped: nothing is added per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from plugins.ratelimit_redis import RedisBackend
from plugins.store_breaker import STORE_ERRORS

if TYPE_CHECKING:
    from gateway.redis_client import RedisConnections
    from plugins.ratelimit import RateLimitSettings
    from plugins.ratelimit_backend import LimiterBackend


def redis_backend(connections: RedisConnections, settings: RateLimitSettings, processes: int) -> RedisBackend:
    redis = connections.settings
    return RedisBackend(
        connections.client(), connections.pipeline(), prefix=settings.key_prefix,
        policy=settings.on_store_error, share=processes,
        # A command's socket timeout, plus a little for a busy event loop; it also bounds a
        # connect to a host that does not answer (whose own timeout is longer).
        guard_s=redis.timeout_s + 0.04,
    )


async def start_backend(app: web.Application, backend: LimiterBackend) -> None:
    if not isinstance(backend, RedisBackend):
        return
    # Load the scripts now, so even the first request costs one round trip; a Redis that is
    # not there yet is no reason to refuse to start (the first EVALSHA loads them then).
    with contextlib.suppress(*STORE_ERRORS):
        async with asyncio.timeout(2.0):
            await backend.warm_up()
    from plugins.metrics import METRICS  # the metrics plugin's registry, when it is on

    metrics = app.get(METRICS)
    if metrics is not None:
        # One collector per process, reading the backend of the current configuration.
        metrics.process_collector("ratelimit_store", StoreCollector).backend = backend


def backend_status(backend: LimiterBackend) -> dict[str, Any]:
    if not isinstance(backend, RedisBackend):
        return {"backend": "memory", "shared": False}
    breaker = backend.breaker
    return {
        "backend": "redis",
        "shared": not breaker.open,
        "state": "degraded" if breaker.open else "shared",
        "on_store_error": backend.policy,
        "local_share": f"1/{backend.share}",
        "store_errors": breaker.errors,
        "degraded_transitions": breaker.opened,
        "settles_pending": backend.pending(),
        "settles_dropped": backend.settles_dropped,
    }


async def limits_health(request: web.Request) -> web.Response:
    from plugins.ratelimit import RATE_LIMIT

    return web.json_response(backend_status(request.app[RATE_LIMIT].backend))


class StoreCollector:
    """prometheus-client collector reading the backend's counters at scrape time."""

    def __init__(self, backend: RedisBackend | None = None) -> None:
        self.backend = backend

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        b = self.backend
        if b is None:
            return
        degraded = GaugeMetricFamily(
            "llm_gateway_ratelimit_degraded", "1 while the rate-limit store is unavailable.", labels=["policy"])
        degraded.add_metric([b.policy], 1.0 if b.breaker.open else 0.0)
        yield degraded
        yield CounterMetricFamily(
            "llm_gateway_ratelimit_store_errors", "Rate-limit store errors and timeouts.", value=b.breaker.errors)
        yield CounterMetricFamily(
            "llm_gateway_ratelimit_degradations", "Times the rate limits fell back to on_store_error.",
            value=b.breaker.opened)
        yield CounterMetricFamily(
            "llm_gateway_ratelimit_settles_dropped", "Token settlements the full queue refused.",
            value=b.settles_dropped)
