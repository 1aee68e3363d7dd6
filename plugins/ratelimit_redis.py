"""Rate-limit buckets in Redis, shared by every worker and replica: ``rate_limit.backend: redis``.
The buckets are GCRA state, checked and charged by the scripts in ``plugins.ratelimit_gcra``.

One round trip per admission: ``ADMIT`` reads every bucket that applies (global, provider, key;
requests and tokens), and writes all of them only if all have room (all or nothing), with
``TIME`` inside the script as the one clock, so processes never disagree about time. Keys expire
when the bucket has drained (PX = TAT - now + 1 s). Keys share the hash tag ``{rl}`` so the script
also runs on a Redis Cluster (one slot). Scripts are loaded at start-up and sent with EVALSHA;
after a Redis restart the NOSCRIPT answer makes the backend load them again and retry, so the
restart costs one request two extra round trips and nothing else.

Token reservations are settled with the real usage off the request path: ``settle`` puts the
correction on a bounded in-process queue, and one task per process drains it in pipelined
batches. ``SETTLE`` first sets a marker ``{rl}:settled:<id>`` (NX, 10 min): a settle replayed with
the same id changes nothing. A settle Redis cannot take is applied to the local shares instead.

Redis slow or gone: see ``StoreBreaker`` and ``rate_limit.on_store_error`` (``local`` enforces
``limit / (workers x replicas)`` in this process, ``open`` admits, ``closed`` answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from random import getrandbits
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from gateway.errors import ServiceUnavailableError
from gateway.redis_pipeline import AutoPipeline
from plugins.ratelimit_backend import REQUESTS, BucketView, Charge, Decision, InProcessBackend, Limit
from plugins.ratelimit_gcra import ADMIT, ADMIT_SHA, SETTLE, SETTLE_SHA, interval_us, view
from plugins.store_breaker import STORE_ERRORS, StoreBreaker

log = logging.getLogger("llm_gateway.ratelimit")

SETTLED_TTL_MS = 600_000
SETTLE_BATCH = 64
SETTLE_LINGER_S = 0.02
SETTLE_QUEUE = 10_000


class RedisBackend:
    """``LimiterBackend`` on Redis, with a breaker and a per-process fallback."""

    def __init__(self, client: Redis, pipe: AutoPipeline, *, prefix: str, policy: str, share: int,
                 guard_s: float) -> None:
        self.client = client  # a pooled connection each: settles, probes, script loads
        self.pipe = pipe  # admissions: one connection, auto-pipelined with the other request-path calls
        # Settles: a connection of their own, so admissions never queue behind a batch of them.
        self.settles = AutoPipeline(client.connection_pool, max(1.0, guard_s))
        self.prefix = f"{prefix}:{{rl}}:"
        self.policy = policy  # on_store_error: local | open | closed
        self.share = share  # processes a limit is divided between when enforced locally
        self.guard_s = guard_s  # the most a store call may add to an admission
        self.local = InProcessBackend()
        self.breaker = StoreBreaker("rate limits", self.ping, degraded_note=self.degraded_note())
        self.settles_dropped = 0
        self._queue: asyncio.Queue[tuple[str, tuple[tuple[Limit, float], ...]]] = asyncio.Queue(SETTLE_QUEUE)
        self._settler: asyncio.Task[None] | None = None
        self._scaled: dict[Limit, Limit] = {}
        # bucket name -> (the limit it was encoded for, its Redis key, interval and tolerance as text)
        self._keys: dict[str, tuple[Limit, str, str, str]] = {}
        # Requests limits Redis said are full, and until when (monotonic): see refused_here.
        self._full: dict[Limit, float] = {}

    def degraded_note(self) -> str:
        return {"local": f"enforcing 1/{self.share} of each limit in this process",
                "open": "admitting every request", "closed": "answering 503"}[self.policy]

    async def warm_up(self) -> None:
        """At start-up: load the scripts and open the connection admissions use, so the first
        burst of requests pays neither a NOSCRIPT round trip nor a connect."""
        await self.client.script_load(ADMIT)
        await self.client.script_load(SETTLE)
        await self.pipe.call("PING")

    async def ping(self) -> None:
        async with asyncio.timeout(self.guard_s):
            await self.client.ping()

    def encoded(self, limit: Limit) -> tuple[Limit, str, str, str]:
        """``(limit, key, interval, tolerance)`` as the scripts take them. Found by the bucket's
        name, a str hashed in C (a frozen dataclass hashes every field in Python), and kept while
        it is the same limit object (a changed limit is a new object: encoded again)."""
        enc = self._keys.get(limit.key)
        if enc is None or enc[0] is not limit:
            iv = interval_us(limit)
            enc = self._keys[limit.key] = (limit, self.prefix + limit.key, repr(iv), repr(limit.capacity * iv))
        return enc

    def refused_here(self, charges: Sequence[Charge]) -> Decision | None:
        """A request a requests limit cannot take yet, refused without asking Redis. Exact, not
        a guess: a requests bucket only fills (settles correct tokens only), so when Redis said a
        request fits in ``w`` seconds, none fits before that, whoever charges it meanwhile. A
        client hammering past its limit then costs Redis nothing (Envoy's ratelimit keeps the
        same kind of local over-limit cache)."""
        now = time.monotonic()
        for c in charges:
            until = self._full.get(c.limit)
            if until is None:
                continue
            if until <= now:
                del self._full[c.limit]
                continue
            limit, wait = c.limit, until - now
            reset = wait + max(0.0, limit.capacity - 1) / limit.rate_per_s
            return Decision(False, (BucketView(limit, 0.0, reset, wait),))
        return None

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        if self._full and (refused := self.refused_here(charges)) is not None:
            return refused
        if self.breaker.open:
            return await self.degraded(charges)
        keys: list[str] = []
        args: list[str] = []
        for c in charges:
            _, key, iv, tau = self.encoded(c.limit)
            keys.append(key)
            args += (iv, tau, repr(c.amount))
        # No pool checkout, lock or timeout object per admission: the pipeline's batch timer
        # bounds the call, and it travels with whatever else this iteration sends (a cache lookup).
        try:
            try:
                reply: list[Any] = await self.pipe.call("EVALSHA", ADMIT_SHA, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted empty: load the script, then once more
                async with asyncio.timeout(self.guard_s):
                    await self.client.script_load(ADMIT)
                reply = await self.pipe.call("EVALSHA", ADMIT_SHA, len(keys), *keys, *args)
        except STORE_ERRORS as exc:
            self.breaker.failure(exc)
            return await self.degraded(charges)
        self.breaker.success()
        admitted = reply[0] == 1
        views = tuple(view(c, int(a), admitted) for c, a in zip(charges, reply[1:], strict=True))
        if not admitted:
            now = time.monotonic()
            for v in views:
                if v.wait_s > 0 and v.limit.kind == REQUESTS:
                    self._full[v.limit] = now + v.wait_s
        return Decision(admitted, views)

    def scaled(self, limit: Limit) -> Limit:
        """This process's share of a limit, for ``on_store_error: local``."""
        mine = self._scaled.get(limit)
        if mine is None:
            mine = self._scaled[limit] = replace(
                limit, per_minute=max(1, math.ceil(limit.per_minute / self.share)),
                capacity=max(1.0, math.ceil(limit.capacity / self.share)))
        return mine

    async def degraded(self, charges: Sequence[Charge]) -> Decision:
        if self.policy == "open":
            return Decision(True, ())
        if self.policy == "closed":
            raise ServiceUnavailableError(
                "Rate limits cannot be checked right now (their shared store is unavailable).",
                headers={"Retry-After": "1"})
        local = [Charge(m, min(c.amount, m.capacity)) for c in charges for m in (self.scaled(c.limit),)]
        return await self.local.acquire(local)

    def settle(self, request_id: str, adjustments: Sequence[tuple[Limit, float]]) -> None:
        if not adjustments:
            return
        # The settle's own id, not the request id alone: a client may send the same
        # x-request-id again, and must not be able to skip a debt that way.
        settle_id = f"{request_id}:{getrandbits(64):016x}"
        if self._settler is None:
            self._settler = asyncio.get_running_loop().create_task(self._drain())
        try:
            self._queue.put_nowait((settle_id, tuple(adjustments)))
        except asyncio.QueueFull:
            self.settles_dropped += 1

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            # A moment for more to arrive: one pipelined round trip for many settles costs the
            # event loop a fraction of one per settle (and a settle is never urgent).
            await asyncio.sleep(SETTLE_LINGER_S)
            while len(batch) < SETTLE_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self.settle_now(batch)
            except Exception:  # never let one bad batch stop every later settle
                log.exception("rate limits: settling %d requests failed", len(batch))
            finally:
                for _ in batch:
                    queue.task_done()

    async def settle_now(self, batch: Sequence[tuple[str, Sequence[tuple[Limit, float]]]]) -> list[Any]:
        """Apply settles in one pipelined write; 1 per settle applied, 0 per replay. Those Redis
        cannot take are applied to the local shares instead."""
        results: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        if not self.breaker.open:
            todo = await self._settle_remote(batch, results, todo)
            # Redis restarted without the script: load it, send those again (settles are idempotent).
            if todo and any(isinstance(results[i], NoScriptError) for i in todo):
                try:
                    async with asyncio.timeout(max(1.0, self.guard_s)):
                        await self.client.script_load(SETTLE)
                    todo = await self._settle_remote(batch, results, todo)
                except STORE_ERRORS as exc:
                    self.breaker.failure(exc)
        for i in todo:  # the store is away: correct the shares enforced meanwhile
            settle_id, adjustments = batch[i]
            self.local.settle(settle_id, [(self.scaled(limit), amount) for limit, amount in adjustments])
        return [r for r in results if not isinstance(r, BaseException) and r is not None]

    async def _settle_remote(self, batch: Sequence[tuple[str, Sequence[tuple[Limit, float]]]],
                             results: list[Any], todo: list[int]) -> list[int]:
        """Send ``todo``'s settles (plain EVALSHA: redis-py's script objects would add a SCRIPT
        EXISTS round trip); the indexes that failed."""
        calls = []
        for i in todo:
            settle_id, adjustments = batch[i]
            keys, args = [f"{self.prefix}settled:{settle_id}"], [str(SETTLED_TTL_MS)]
            for limit, amount in adjustments:
                _, key, iv, _ = self.encoded(limit)
                keys.append(key)
                args += (iv, repr(amount))
            calls.append(self.settles.call("EVALSHA", SETTLE_SHA, len(keys), *keys, *args))
        failed, error = [], None
        for i, reply in zip(todo, await asyncio.gather(*calls, return_exceptions=True), strict=True):
            results[i] = reply
            if isinstance(reply, BaseException):
                failed.append(i)
                if not isinstance(reply, NoScriptError):
                    error = error or reply
        if error is not None:
            self.breaker.failure(error)  # one batch, one store error
        elif len(failed) < len(todo):
            self.breaker.success()
        return failed

    def pending(self) -> int:
        return self._queue.qsize()

    async def flush(self) -> None:
        """Wait until every settle queued so far has been applied."""
        await self._queue.join()

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.flush()
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler
        await self.breaker.close()
        await self.settles.close()
        await self.local.close()
