"""Token settles on Redis, many requests to a script call, off the request path.

A request's settle (its token reservation corrected with the real usage) is appended to a
bounded in-process list; one task per process drains it. It waits ``SETTLE_LINGER_S`` after the
first settle (a settle is never urgent), then sends everything that arrived meanwhile as ``SETTLE``
calls of up to ``SETTLE_BATCH`` settles each, all in one pipelined write: a burst of requests costs
one command, one future and one reply, not one of each per request. ``SETTLE`` skips a settle whose
marker is already set, so a settle replayed with the same id changes nothing.

Bounded failure: a full list drops the settle (counted in ``settles_dropped``; its reservation
stands, which errs on the safe side); a call Redis does not answer in time, or refuses, has its
settles applied to this process's shares of the limits instead (the ones enforced while Redis is
away), and tells the breaker once; after a Redis restart (NOSCRIPT) the script is loaded and the
calls sent once more; an unexpected error is logged and never stops later settles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from plugins.ratelimit_backend import Limit
from plugins.ratelimit_gcra import SETTLE, SETTLE_SHA
from plugins.store_breaker import STORE_ERRORS

if TYPE_CHECKING:
    from plugins.ratelimit_redis import RedisBackend

log = logging.getLogger("llm_gateway.ratelimit")

SETTLED_TTL_MS = "600000"  # how long a settle's marker is kept (its replay window)
SETTLE_BATCH = 64  # settles per script call
SETTLE_LINGER_S = 0.02
SETTLE_QUEUE = 10_000  # settles waiting at most; more are dropped
# A settle: its id, and per bucket the units to add.
Settle = tuple[str, Sequence[tuple[Limit, float]]]


class Settles:
    """The settles of one ``RedisBackend``: queued, batched, sent, or applied locally."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.dropped = 0
        self._queue: list[Settle] = []  # not sent yet
        self._queued = self._done = 0  # settles accepted, and taken off the queue and finished
        self._wake: asyncio.Future[None] | None = None  # the drain waiting for a first settle
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []  # (settles to be done, waiter)
        self._drain_task: asyncio.Task[None] | None = None

    def add(self, settle: Settle) -> None:
        queue = self._queue
        if len(queue) >= SETTLE_QUEUE:
            self.dropped += 1
            return
        queue.append(settle)
        self._queued += 1
        wake = self._wake
        if wake is not None and not wake.done():  # the drain waits for this one
            self._wake = None
            wake.set_result(None)
        elif self._drain_task is None or self._drain_task.done():  # the first, or after a cancellation
            self._wake = None
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    def pending(self) -> int:
        """Settles accepted and not finished yet (queued or in flight)."""
        return self._queued - self._done

    async def flush(self) -> None:
        """Wait until every settle accepted so far has been applied (in Redis or locally)."""
        if self._done < self._queued:
            waiter = asyncio.get_running_loop().create_future()
            self._flushes.append((self._queued, waiter))
            await waiter

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake = loop.create_future()
                await self._wake
            # A moment for more to arrive: one call for many settles costs the event loop a
            # fraction of one per settle.
            await asyncio.sleep(SETTLE_LINGER_S)
            batch, self._queue = self._queue, []
            try:
                await self.settle_now(batch)
            except Exception:  # never let one bad batch stop every later settle
                log.exception("rate limits: settling %d requests failed", len(batch))
            finally:
                self._finished(len(batch))

    def _finished(self, n: int) -> None:
        self._done += n
        if self._flushes:
            waiting = []
            for target, waiter in self._flushes:
                if target > self._done:
                    waiting.append((target, waiter))
                elif not waiter.done():
                    waiter.set_result(None)
            self._flushes = waiting

    async def settle_now(self, batch: Sequence[Settle]) -> list[int]:
        """Apply settles now: per settle Redis took, 1 (applied) or 0 (a replay); those Redis
        cannot take are applied to the local shares instead (and have no entry)."""
        backend = self.backend
        chunks = [batch[i:i + SETTLE_BATCH] for i in range(0, len(batch), SETTLE_BATCH)]
        results: list[int] = []
        if not backend.breaker.open:
            chunks, lost_script = await self._send(chunks, results)
            if lost_script:  # Redis restarted without the script: load it, send those again
                try:
                    async with asyncio.timeout(max(1.0, backend.guard_s)):
                        await backend.client.script_load(SETTLE)
                    chunks, _ = await self._send(chunks, results)
                except STORE_ERRORS as exc:
                    backend.breaker.failure(exc)
        for chunk in chunks:  # the store is away: correct the shares enforced meanwhile
            for settle_id, adjustments in chunk:
                backend.local.settle(settle_id, [(backend.scaled(limit), amount) for limit, amount in adjustments])
        return results

    async def _send(self, chunks: list[Sequence[Settle]], results: list[int]) -> tuple[list[Sequence[Settle]], bool]:
        """One ``SETTLE`` call per chunk, all in one write (plain EVALSHA: redis-py's script
        objects would add a SCRIPT EXISTS round trip); the chunks that failed, and whether any
        failed for want of the script."""
        backend = self.backend
        calls = [backend.settles.call(*self.command(chunk)) for chunk in chunks]
        failed: list[Sequence[Settle]] = []
        error: BaseException | None = None
        lost_script = False
        for chunk, call in zip(chunks, calls, strict=True):
            try:  # every call was written already: awaiting them in turn waits for one round trip
                results += await call
            except STORE_ERRORS as exc:
                failed.append(chunk)
                if isinstance(exc, NoScriptError):
                    lost_script = True
                else:
                    error = error or exc
        if error is not None:
            backend.breaker.failure(error)  # one batch, one store error
        elif len(failed) < len(chunks):
            backend.breaker.success()
        return failed, lost_script

    def command(self, chunk: Sequence[Settle]) -> tuple[Any, ...]:
        """The ``SETTLE`` call for ``chunk``: per settle its marker and buckets (keys), its
        bucket count and (interval, units) per bucket (arguments)."""
        encode, marker = self.backend.encoded, self.backend.prefix + "settled:"
        keys: list[str] = []
        args: list[str] = [SETTLED_TTL_MS]
        for settle_id, adjustments in chunk:
            keys.append(marker + settle_id)
            args.append(str(len(adjustments)))
            for limit, amount in adjustments:
                _, key, iv, _ = encode(limit)
                keys.append(key)
                args += (iv, repr(amount))
        return ("EVALSHA", SETTLE_SHA, len(keys), *keys, *args)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.flush()
        task, self._drain_task = self._drain_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, waiter in self._flushes:
            waiter.cancel()
        self._flushes = []
