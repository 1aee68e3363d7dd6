"""Rate-limit buckets in Redis, shared by every worker and replica: ``rate_limit.backend: redis``.
The buckets are GCRA state, checked and charged by the scripts in ``plugins.ratelimit_gcra``.

One round trip per admission: ``ADMIT`` reads every bucket that applies (global, provider, key;
requests and tokens), and writes all of them only if all have room (all or nothing), with
``TIME`` inside the script as the one clock, so processes never disagree about time. The usual
admission sends its plan's prebuilt call (``send``; the plugin reads the reply into headers);
``acquire`` is the general way (any charges, refusals, waits, the store away). Keys expire
when the bucket has drained (PX = TAT - now + 1 s). Keys share the hash tag ``{rl}`` so the script
also runs on a Redis Cluster (one slot). Scripts are loaded at start-up and sent with EVALSHA;
after a Redis restart the NOSCRIPT answer makes the backend load them again and retry, so the
restart costs one request two extra round trips and nothing else.

Token reservations are settled with the real usage off the request path: ``settle`` appends the
correction to a bounded in-process list, and one task per process drains it: every settle that
arrived meanwhile goes out in one ``SETTLE`` call (up to ``SETTLE_BATCH`` a call, the calls in one
pipelined write). ``SETTLE`` sets each settle's marker ``{rl}:settled:<id>`` (NX, 10 min) before
applying it: a settle replayed with the same id changes nothing. A call Redis cannot take has its
settles applied to the local shares instead.

Redis slow or gone: see ``StoreBreaker`` and ``rate_limit.on_store_error`` (``local`` enforces
``limit / (workers x replicas)`` in this process, ``open`` admits, ``closed`` answers 503).
"""

from __future__ import annotations

import asyncio
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
from plugins.ratelimit_gcra import ADMIT, ADMIT_SHA, SETTLE, encoded, view
from plugins.ratelimit_plan import Plan
from plugins.ratelimit_settle import Settle, Settles
from plugins.store_breaker import STORE_ERRORS, StoreBreaker

FULL_PRUNE_AT = 1024  # full requests limits remembered, at least, before those with room are forgotten


class RedisBackend:
    """``LimiterBackend`` on Redis, with a breaker and a per-process fallback."""

    def __init__(self, client: Redis, pipe: AutoPipeline, *, prefix: str, policy: str, share: int,
                 guard_s: float) -> None:
        self.client = client  # a pooled connection each: probes, script loads
        self.pipe = pipe  # admissions: one connection, auto-pipelined with the other request-path calls
        # Settles: a connection of their own, so admissions never queue behind a batch of them.
        self.settles = AutoPipeline(client.connection_pool, max(1.0, guard_s))
        self.prefix = f"{prefix}:{{rl}}:"
        self.policy = policy  # on_store_error: local | open | closed
        self.share = share  # processes a limit is divided between when enforced locally
        self.guard_s = guard_s  # the most a store call may add to an admission
        self.local = InProcessBackend()
        self.breaker = StoreBreaker("rate limits", self.ping, degraded_note=self.degraded_note())
        # Settles: appended per request, sent in batches by one task (plugins.ratelimit_settle).
        # Their ids are this backend's own (random, then a serial number), never the request id
        # alone: a client may send the same x-request-id again, and must not skip a debt that way.
        self.pending_settles = Settles(self)
        self._settle_ids = f"{getrandbits(64):016x}:"
        self._settle_serial = 0
        self._scaled: dict[Limit, Limit] = {}
        # bucket name -> (the limit it was encoded for, its Redis key, interval and tolerance as text)
        self._keys: dict[str, tuple[Limit, str, str, str]] = {}
        # Requests limits Redis said are full, by bucket name, and until when (monotonic): see
        # refused_here.
        self._full: dict[str, float] = {}
        self._full_prune_at = FULL_PRUNE_AT

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
            enc = self._keys[limit.key] = (limit, self.prefix + limit.key, *encoded(limit))
        return enc

    def refused_here(self, charges: Sequence[Charge]) -> Decision | None:
        """A request a requests limit cannot take yet, refused without asking Redis. Exact, not
        a guess: a requests bucket only fills (settles correct tokens only), so when Redis said a
        request fits in ``w`` seconds, none fits before that, whoever charges it meanwhile. A
        client hammering past its limit then costs Redis nothing (Envoy's ratelimit keeps the
        same kind of local over-limit cache)."""
        now = time.monotonic()
        for c in charges:
            until = self._full.get(c.limit.key)
            if until is None:
                continue
            if until <= now:
                del self._full[c.limit.key]
                continue
            limit, wait = c.limit, until - now
            reset = wait + max(0.0, limit.capacity - 1) / limit.rate_per_s
            return Decision(False, (BucketView(limit, 0.0, reset, wait),))
        return None

    def send(self, plan: Plan, tokens: int) -> asyncio.Future[list[Any]] | None:
        """The usual admission: the plan's prebuilt ``ADMIT`` call, sent with whatever else this
        loop turn sends; its reply is the script's (``admitted`` reads it). None when ``acquire``
        must decide: one of the plan's requests limits is full (refused here), or the store is away."""
        if self.breaker.open or (self._full and self.full_in(plan)):
            return None
        return self.pipe.call(*plan.admit, str(tokens))

    def full_in(self, plan: Plan) -> bool:
        """Whether a requests limit Redis said is full is among the plan's (``refused_here``
        forgets it once it has room), so a client over its limit sends nobody else the general way."""
        full = self._full
        return any(row[0] in full for row in plan.rows)

    def admitted(self, reply: list[Any]) -> bool:
        """Whether the reply to a ``send`` admitted the request (when not, ``decision`` reads it)."""
        breaker = self.breaker
        if breaker.consecutive:
            breaker.success()
        return reply[-1] == 1

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
        command = ("EVALSHA", ADMIT_SHA, len(keys), *keys, *args)
        # No pool checkout, lock or timeout object per admission: the pipeline's batch timer
        # bounds the call, and it travels with whatever else this iteration sends (a cache lookup).
        try:
            reply = await self.pipe.call(*command)
        except STORE_ERRORS as exc:
            reply = await self.retry(exc, command)
            if reply is None:
                return await self.degraded(charges)
        else:
            self.breaker.success()
        return self.decision(charges, reply)

    async def retry(self, exc: BaseException, command: tuple[Any, ...]) -> list[Any] | None:
        """After an admission failed with ``exc``: when Redis restarted empty (NOSCRIPT), load
        the script and send ``command`` once more; the reply, or None once the breaker has been
        told of the store's error (the caller then follows ``on_store_error``)."""
        if isinstance(exc, NoScriptError):
            try:
                async with asyncio.timeout(self.guard_s):
                    await self.client.script_load(ADMIT)
                reply: list[Any] = await self.pipe.call(*command)
            except STORE_ERRORS as error:
                exc = error
            else:
                self.breaker.success()
                return reply
        self.breaker.failure(exc)
        return None

    def decision(self, charges: Sequence[Charge], reply: list[Any]) -> Decision:
        """The ``Decision`` in an ``ADMIT`` reply to ``charges``; a refusal remembers the full
        requests limits (``refused_here``)."""
        admitted = reply[-1] == 1
        views = tuple(view(c, int(a), admitted) for c, a in zip(charges, reply[:-1], strict=True))
        if not admitted:
            full, now = self._full, time.monotonic()
            if len(full) >= self._full_prune_at:  # forget those with room again (amortised)
                for name in [name for name, until in full.items() if until <= now]:
                    del full[name]
                self._full_prune_at = max(FULL_PRUNE_AT, 2 * len(full))
            for v in views:
                if v.wait_s > 0 and v.limit.kind == REQUESTS:
                    full[v.limit.key] = now + v.wait_s
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
        if adjustments:
            self._settle_serial += 1
            self.pending_settles.add((f"{self._settle_ids}{self._settle_serial:x}", adjustments))

    async def settle_now(self, batch: Sequence[Settle]) -> list[int]:
        """Apply settles at once: 1 per settle applied, 0 per replay (``Settles.settle_now``)."""
        return await self.pending_settles.settle_now(batch)

    @property
    def settles_dropped(self) -> int:
        return self.pending_settles.dropped

    def pending(self) -> int:
        return self.pending_settles.pending()

    async def flush(self) -> None:
        """Wait until every settle queued so far has been applied."""
        await self.pending_settles.flush()

    async def close(self) -> None:
        await self.pending_settles.close()
        await self.breaker.close()
        await self.settles.close()
        await self.local.close()
