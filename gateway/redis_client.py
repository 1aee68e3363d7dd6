"""Connections to Redis, the shared store for state that must hold across workers and replicas.

One ``RedisConnections`` per process, made from the top-level ``redis:`` section and kept on the
app under ``gateway.keys.REDIS``. A plugin asks it for a client (``client()`` for the configured
URL, ``client(url)`` for a plugin's own instance, e.g. a cache with its own eviction policy); each
URL gets one blocking connection pool, created on first use inside the running event loop (so
after any fork) and closed when the app shuts down, after the plugins' ``gateway_shutdown``.

Every command carries the section's ``timeout_s`` as its socket timeout and is never retried by the
client library: a slow or absent Redis must cost a request a bounded, known time, and the caller
decides what a store error means (see each plugin's ``on_store_error``). A burst larger than the
pool waits up to ``pool_wait_s`` for a free connection; that wait is back-pressure, not an error.

The commands a client waits on (admissions, cache lookups) go through ``pipeline(url)`` instead:
one more connection to that URL, with the pool's settings, on which every command of an event-loop
iteration is written at once (``gateway.redis_pipeline``), each bounded by ``timeout_s``.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.config import RedisConfig
from gateway.redis_pipeline import AutoPipeline

LOOP_SLACK_S = 0.04


class RedisConnections:
    def __init__(self, settings: RedisConfig) -> None:
        self.settings = settings
        self._clients: dict[str, Redis] = {}
        self._pipelines: dict[str, AutoPipeline] = {}

    def client(self, url: str | None = None) -> Redis:
        """The client for ``url`` (default: the section's), its pool made on first use."""
        url = url or self.settings.url
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = self._connect(url)
        return client

    def pipeline(self, url: str | None = None) -> AutoPipeline:
        """The auto-pipelined connection for ``url`` (default: the section's), shared by every
        plugin that sends to that URL, so one request's commands travel in one write."""
        url = url or self.settings.url
        pipe = self._pipelines.get(url)
        if pipe is None:
            # The command timeout, plus a little for a busy event loop that reads a reply late.
            timeout_s = self.settings.timeout_s + LOOP_SLACK_S
            pipe = self._pipelines[url] = AutoPipeline(self.client(url).connection_pool, timeout_s)
        return pipe

    def _connect(self, url: str) -> Redis:
        s = self.settings
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=s.max_connections,
            timeout=s.pool_wait_s,
            socket_timeout=s.timeout_s,
            socket_connect_timeout=s.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return Redis(connection_pool=pool)

    async def close(self) -> None:
        pipelines, self._pipelines = list(self._pipelines.values()), {}
        for pipe in pipelines:
            await pipe.close()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose(close_connection_pool=True)
