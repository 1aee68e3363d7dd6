"""The response cache in Redis (``cache.backend: redis``): ``RedisStore``.

Answers live under ``KEY_PREFIX`` + key with a TTL (``SET ... PX``), so an answer stored by one
worker or replica is a hit in every other; Redis evicts by its own ``maxmemory-policy``
(``allkeys-lru`` on a cache instance). Values are the plugin's serialised envelope, zlib-compressed
above 1 KiB. A store error is never a failure: a lookup answers None (a miss) and a store drops the
value, each within one command timeout (``redis.timeout_s``); after a few errors in a row a breaker
stops calling Redis for a second at a time, so a dead Redis costs requests nothing until a probe
finds it back.

Lookups and plain stores go on the request path's pipelined connection (``gateway.redis_pipeline``):
``lookup`` sends the GET at once, so the cache plugin can start it in the loop iteration of the
request's rate-limit admission and both travel in one write. With ``lock_wait_s`` a ``claim`` that
misses takes a lock in one script, or, when another process holds it, waits (bounded) for that
process's answer; ``set`` and ``abandon`` release it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import zlib
from collections.abc import Callable
from typing import Any

import redis.exceptions

from gateway.config import CircuitBreakerConfig
from gateway.redis_client import RedisConnections
from gateway.redis_pipeline import AutoPipeline
from gateway.resilience import CLOSED, OPEN, CircuitBreaker

log = logging.getLogger("llm_gateway.cache")

# Bumped when the envelope changes shape, so old entries are never read as new ones.
KEY_PREFIX = "llm-gateway:cache:v1:"
# Values above this are stored compressed (zlib level 1: ~5x on JSON text for microseconds).
COMPRESS_ABOVE = 1024
RAW, ZLIB = b"\x00", b"\x01"
# Three errors in a row open the breaker; one probe a second while it is open.
STORE_BREAKER = CircuitBreakerConfig(consecutive_failures=3, error_rate=1.0, min_requests=1_000_000, open_s=1.0)
STORE_ERRORS = (redis.exceptions.RedisError, OSError, TimeoutError)
# How often a request waiting for another process's answer looks for it.
POLL_S = 0.05

# The cross-process lock (cache.lock_wait_s): one round trip each, like the GET and SET they replace.
# LOOKUP: the value; else 1 when this caller now holds the lock, 0 when another process does.
LOOKUP = """
local v = redis.call('GET', KEYS[1])
if v then return v end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# PEEK: the value; else 1 while the lock is held, 0 once it is gone.
PEEK = """
local v = redis.call('GET', KEYS[1])
if v then return v end
return redis.call('EXISTS', KEYS[2])
"""
# STORE: the value (when given), then the lock released if it is still this caller's.
STORE = """
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""


def pack(value: bytes) -> bytes:
    if len(value) > COMPRESS_ABOVE:
        return ZLIB + zlib.compress(value, 1)
    return RAW + value


def unpack_found(stored: bytes | None) -> bytes | None:
    """What a GET found: the value ``pack`` stored, None for a miss."""
    return None if stored is None else unpack(stored)


def unpack(stored: bytes) -> bytes | None:
    """The value ``pack`` stored; None for anything else (a foreign or damaged entry is a miss)."""
    head, body = stored[:1], stored[1:]
    if head == RAW:
        return body
    if head == ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error:
            return None
    return None


class RedisStore:
    """Answers in Redis under ``KEY_PREFIX`` + key, each with a TTL (``SET ... PX``).

    ``url`` is ``cache.redis_url`` (a separate instance with its own eviction policy) or None for
    the top-level ``redis.url``; the connection settings are the ``redis:`` section's. A value
    larger than ``max_bytes`` is not stored, as in ``InProcessLRU``.
    """

    remote = True

    def __init__(self, connections: RedisConnections, url: str | None, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic, lock_wait_s: float = 0.0) -> None:
        self.connections = connections
        self.url = url
        self.max_bytes = max_bytes
        # With lock_wait_s, a claim that misses takes a lock; others wait for its answer that long.
        self.lock_wait_s = lock_wait_s
        self.token = secrets.token_hex(8)  # this process's, for releasing only its own locks
        self.held: set[str] = set()
        self.waiting = 0  # requests waiting for another process's answer now
        self.scripts: dict[str, Any] = {}
        # The whole call, a wait for a pooled connection included, within one command timeout: a
        # lookup is worth less than the time a client would wait for it.
        self.guard_s = connections.settings.timeout_s
        self.breaker = CircuitBreaker(STORE_BREAKER, clock)
        # The breaker is closed and heard a success last: another success changes nothing it acts
        # on (it opens on consecutive errors only), so it is not told again.
        self.clean = True
        self.pipe: AutoPipeline | None = None

    def lookup(self, key: str) -> asyncio.Future[Any] | None:
        """Start a lookup now, on the connection the request path shares (``gateway.redis_pipeline``):
        it goes out in one write with whatever else this loop iteration sends, e.g. the request's
        rate-limit admission. None while the breaker keeps Redis off the request path. ``found``
        takes the answer; the breaker hears of it either way, even when nobody takes it."""
        if not self.breaker.allow():
            return None
        fut = (self.pipe or self._pipeline()).call("GET", KEY_PREFIX + key)
        fut.add_done_callback(self.heard)
        return fut

    def send(self, key: str, value: bytes, ttl_s: float) -> asyncio.Future[Any] | None:
        """``set`` without a coroutine, for a key this process holds no lock on (else ``set``):
        the SET goes out now on the pipelined connection, with whatever else this loop iteration
        sends; its future (the caller hands it to ``heard`` when done, for the breaker), or None
        when nothing was sent (too large, or the breaker keeps Redis off the request path)."""
        if len(key) + len(value) > self.max_bytes or not self.breaker.allow():
            return None
        return (self.pipe or self._pipeline()).call("SET", KEY_PREFIX + key, pack(value), "PX",
                                                    max(1, int(ttl_s * 1000)))

    def heard(self, fut: asyncio.Future[Any]) -> None:
        """How a pipelined command went, for the breaker."""
        if fut.cancelled():
            return
        exc = fut.exception()  # retrieved here: never "never retrieved"
        if isinstance(exc, STORE_ERRORS):
            self._failed(exc)
        elif not self.clean:
            self._succeeded()

    def _pipeline(self) -> AutoPipeline:
        """The request path's pipelined connection to this store, asked for once."""
        pipe = self.pipe = self.connections.pipeline(self.url)
        return pipe

    @staticmethod
    async def found(lookup: asyncio.Future[Any] | None) -> bytes | None:
        """The value a ``lookup`` found; None for a miss, a store error or no lookup."""
        if lookup is None:
            return None
        try:
            return unpack_found(await lookup)
        except STORE_ERRORS:
            return None

    async def get(self, key: str) -> bytes | None:
        return await self.found(self.lookup(key))

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(key) + len(value) > self.max_bytes:
            await self.abandon(key)
            return
        px = max(1, int(ttl_s * 1000))
        if key in self.held:
            self.held.discard(key)
            await self._call(STORE, key, pack(value), px, self.token)
        else:
            await self._call(None, key, pack(value), px)

    async def claim(self, key: str) -> bytes | None:
        if not self.lock_wait_s:
            return await self.get(key)
        found = await self._call(LOOKUP, key, self.token, int(self.lock_wait_s * 1000))
        if isinstance(found, bytes):
            return unpack(found)
        if found == 1:  # this request fetches the answer; set() or abandon() releases the lock
            self.held.add(key)
        if found != 0:
            return None  # a miss (or a store error: a miss without a lock)
        return await self._wait_for(key)

    async def abandon(self, key: str) -> None:
        if key in self.held:
            self.held.discard(key)
            await self._call(STORE, key, b"", 0, self.token)

    async def _wait_for(self, key: str) -> bytes | None:
        """Another process holds the lock: its answer, once stored; None when it gives up, the
        lock expires or ``lock_wait_s`` passes (then this request fetches the answer itself)."""
        self.waiting += 1
        try:
            for _ in range(max(1, int(self.lock_wait_s / POLL_S))):
                await asyncio.sleep(POLL_S)
                found = await self._call(PEEK, key)
                if isinstance(found, bytes):
                    return unpack(found)
                if found != 1:
                    return None  # the lock is gone without an answer, or the store failed
            return None
        finally:
            self.waiting -= 1

    async def _call(self, script: str | None, key: str, *args: bytes | str | int) -> bytes | int | None:
        """One command or script within the command timeout; None on a store error (a miss)."""
        if not self.breaker.allow():
            return None
        try:
            if script is None:  # a plain store: on the shared pipelined connection, no pool checkout
                value, px = args[0], args[1]
                result = await (self.pipe or self._pipeline()).call("SET", KEY_PREFIX + key, value, "PX", px)
            else:
                async with asyncio.timeout(self.guard_s):
                    # EVALSHA, loaded again by redis-py when a restarted Redis answers NOSCRIPT.
                    client = self.connections.client(self.url)
                    run = self.scripts.get(script) or self.scripts.setdefault(script, client.register_script(script))
                    result = await run(keys=(KEY_PREFIX + key, KEY_PREFIX + key + ":lock"), args=args)
        except STORE_ERRORS as exc:
            self._failed(exc)
            return None
        self._succeeded()
        return result

    async def close(self) -> None:
        """The connections belong to the app's ``RedisConnections``, closed after the plugins."""

    def _failed(self, exc: BaseException) -> None:
        was, self.clean = self.breaker.state, False
        self.breaker.record(False)
        if was != OPEN and self.breaker.state == OPEN:
            # The type only: a message may repeat the URL, and the URL may hold a password.
            log.warning("response cache store unreachable (%s): serving without the cache", type(exc).__name__)

    def _succeeded(self) -> None:
        if self.clean:
            return
        was = self.breaker.state
        self.breaker.record(True)
        self.clean = self.breaker.state == CLOSED
        if was != CLOSED and self.clean:
            log.info("response cache store reachable again")
