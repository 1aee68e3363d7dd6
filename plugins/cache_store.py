"""Where the response cache keeps answers: the ``CacheBackend`` interface and its memory backend.

``InProcessLRU`` (``cache.backend: memory``, the default) is an LRU in this process's memory,
bounded by entry count and bytes. ``RedisStore`` (``cache.backend: redis``, ``plugins.cache_redis``,
also importable from here) keeps answers in Redis, so an answer stored by one worker or replica is
a hit in every other.

Both take the same values (the plugin's serialised envelope) and answer alike: ``get`` gives the
value or None, ``set`` stores it for ``ttl_s`` seconds or drops it. ``claim`` is ``get`` for a
request that will fetch the answer itself on a miss (a shared store may make it wait, bounded, for
another process fetching the same).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from plugins.cache_redis import KEY_PREFIX, RedisStore

__all__ = ["KEY_PREFIX", "CacheBackend", "Entry", "InProcessLRU", "RedisStore"]


class CacheBackend(Protocol):
    """Where answers are kept."""

    # True when a call is a network round trip: the plugin then stores in a task of its own.
    remote: bool

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent, expired or unreachable."""

    async def claim(self, key: str) -> bytes | None:
        """``get`` for a request that will fetch the answer when it misses: a shared store may
        make it wait (bounded) for another process fetching the same, and answer with that."""

    async def abandon(self, key: str) -> None:
        """The claimed answer will not come (error, not cacheable): let others fetch it."""

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store (or replace) a value for ``ttl_s`` seconds; a backend may drop it at any time."""

    async def close(self) -> None:
        """Release what the backend holds; called once at shutdown."""


# A stored value: (value, expires_at on the clock, size). A plain tuple, not a class: one is made
# per store, and a class's ``__init__`` would be a Python call per request.
Entry = tuple[bytes, float, int]


class InProcessLRU:
    """An LRU in this process's memory, bounded by entry count and by bytes (key + value).

    ``clock`` is a monotonic time source (seconds); tests replace it to expire entries.
    """

    remote = False

    def __init__(self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    async def get(self, key: str) -> bytes | None:
        return self.lookup(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.put(key, value, ttl_s)

    def lookup(self, key: str) -> bytes | None:
        """``get`` without a coroutine: the cache plugin calls it directly on this backend."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """``set`` without a coroutine."""
        size = len(key) + len(value)
        if size > self.max_bytes:
            return  # would evict everything else and still not fit
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        entries[key] = (value, self.clock() + ttl_s, size)
        self.bytes += size
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= entries.popitem(last=False)[1][2]  # the least recently used

    claim = get  # one process: the plugin's flights already coalesce identical requests

    async def abandon(self, key: str) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: str) -> None:
        self.bytes -= self._entries.pop(key)[2]
