"""The response cache's state, a request's pending store, and stores made after the response.

A store to a remote backend is not awaited by the request (``plugins.cache``): a plain ``SET``
goes out on the pipelined connection (``RedisStore.send``) and a done-callback ends the flight,
so no task is made per store; a store that must release this process's lock
(``cache.lock_wait_s``) or another remote backend's store runs in a task. Either is in
``CacheState.storing`` until answered, for shutdown to wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from plugins.cache_flight import Flights
from plugins.cache_store import CacheBackend, InProcessLRU, RedisStore


@dataclass(frozen=True, slots=True)
class CacheState:
    backend: CacheBackend
    ttl_s: float
    per_key: bool = False
    max_entry_bytes: int | None = None
    flights: Flights = field(default_factory=Flights)
    # Stores to a remote backend under way, awaited at shutdown.
    storing: set[asyncio.Future[Any]] = field(default_factory=set)
    # The backend when it is this process's memory: called without a coroutine per lookup and store.
    local: InProcessLRU | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if isinstance(self.backend, InProcessLRU):
            object.__setattr__(self, "local", self.backend)


@dataclass(slots=True)
class Pending:
    """A request that missed (or bypassed) the cache: where to store its answer, if at all,
    whether it leads a flight that identical requests wait for, and (once the answer came) the
    serialised answer to store once the client has it. It carries the cache's state, so the
    later hooks need no look-up of their own."""

    state: CacheState
    key: str
    store: bool
    leads: bool = False
    value: bytes | None = None

    def stored(self, sent: asyncio.Future[Any]) -> None:
        """A store sent without a task (``RedisStore.send``) is answered: the breaker hears how it
        went, and the flight may end."""
        state = self.state
        state.storing.discard(sent)
        backend = state.backend
        assert isinstance(backend, RedisStore)
        backend.heard(sent)
        if self.leads:
            self.state.flights.end(self.key)


def store_later(state: CacheState, pending: Pending, value: bytes) -> None:
    """A plain SET goes out now on the pipelined connection, watched by callback (no task per
    store); one that releases this process's lock (``cache.lock_wait_s``) runs in a task."""
    backend = state.backend
    if not isinstance(backend, RedisStore) or pending.key in backend.held:
        in_background(state, store(state, pending, value))
    elif (sent := backend.send(pending.key, value, state.ttl_s)) is not None:
        state.storing.add(sent)
        sent.add_done_callback(pending.stored)
    elif pending.leads:  # nothing sent
        state.flights.end(pending.key)


def in_background(state: CacheState, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    state.storing.add(task)
    task.add_done_callback(state.storing.discard)


async def store(state: CacheState, pending: Pending, value: bytes) -> None:
    try:
        await state.backend.set(pending.key, value, state.ttl_s)
    finally:
        if pending.leads:
            state.flights.end(pending.key)
