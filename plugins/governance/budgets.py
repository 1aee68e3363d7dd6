"""Budget counters: reserve at admission, settle to the real cost when the request ends.

A counter is one (scope, id, window) triple, e.g. ``("key", "key_ab12", "day:2026-12-01")``, so a
new period starts a new counter and nothing has to reset them.

``LocalLedger`` keeps them in this process: ``baseline`` is what every process has flushed to the
store (read back after each of this process's flushes, about once a second), ``pending`` what this
process settled since, ``reserved`` its requests in flight. Several processes without Redis see
each other's spend within about a second, so together they can overshoot by what they admit in
that second. ``RedisLedger`` keeps the counters in Redis (integer micro-dollars, one Lua script
checks and reserves every scope of a request at once), so N processes never spend N budgets;
while Redis is unreachable it falls back to the local ledger and says so in the log. Its commands
go on the request path's pipelined connection (``gateway.redis_pipeline``): no pool checkout per
reservation, and a reservation sent with ``begin_reserve`` leaves in one write with whatever else
the same loop iteration sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from gateway.redis_pipeline import AutoPipeline
from plugins.store_breaker import STORE_ERRORS

log = logging.getLogger("llm_gateway.governance.budgets")
Counter = tuple[str, str, str]  # scope, id, window
Limit = tuple[Counter, float]  # a counter and its budget in USD
MICRO = 1_000_000
TTL_S = 40 * 86400  # longer than any window

RESERVE = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i], 'NX', 'EX', ARGV[1])
end
local amount = tonumber(ARGV[2 * #KEYS + 2])
for i, key in ipairs(KEYS) do
  local used, budget = tonumber(redis.call('GET', key)), tonumber(ARGV[2 * i + 1])
  if used >= budget or used + amount > budget then return i end
end
for i, key in ipairs(KEYS) do redis.call('INCRBY', key, amount) end
return 0
"""
RESERVE_SHA = hashlib.sha1(RESERVE.encode()).hexdigest()
# A request's settle: every counter it reserved on, corrected by one amount, in one command (one
# reply to read, not one per counter). Sent as EVAL with the text (Redis finds the compiled script
# by its SHA): a settle is not awaited, so it could not load the script after a NOSCRIPT.
SETTLE = "for _, key in ipairs(KEYS) do redis.call('INCRBY', key, ARGV[1]) end return 1"


class LocalLedger:
    def __init__(self) -> None:
        self.baseline: dict[Counter, float] = {}
        self.pending: dict[Counter, float] = defaultdict(float)
        self.reserved: dict[Counter, float] = defaultdict(float)

    def spent(self, counter: Counter) -> float:
        """Settled spend: every process's flushed spend plus this process's since."""
        return self.baseline.get(counter, 0.0) + self.pending.get(counter, 0.0)

    def used(self, counter: Counter) -> float:
        return self.spent(counter) + self.reserved.get(counter, 0.0)

    def reserve(self, limits: Sequence[Limit], amount: float) -> Counter | None:
        """Reserve ``amount`` on every counter, or on none: the first counter without room (a
        counter already at its budget has no room, even for a request priced at nothing)."""
        baseline, pending, reserved = self.baseline, self.pending, self.reserved  # used(), inlined
        for counter, budget in limits:
            used = baseline.get(counter, 0.0) + pending.get(counter, 0.0) + reserved.get(counter, 0.0)
            if used >= budget or used + amount > budget:
                return counter
        for counter, _ in limits:
            reserved[counter] += amount
        return None

    def release(self, counters: Iterable[Counter], reserved: float) -> None:
        for counter in counters:
            left = self.reserved.get(counter, 0.0) - reserved
            if left <= 1e-12:
                self.reserved.pop(counter, None)
            else:
                self.reserved[counter] = left

    def settle(self, windows: Iterable[Counter], cost: float, counters: Iterable[Counter], reserved: float) -> None:
        """A finished request: its cost on every window it counts in (``add``), and its
        reservation off its counters (``release``), in one call."""
        pending = self.pending
        if cost:
            for counter in windows:
                pending[counter] += cost
        held = self.reserved
        for counter in counters:
            left = held.get(counter, 0.0) - reserved
            if left <= 1e-12:
                held.pop(counter, None)
            else:
                held[counter] = left

    def add(self, counters: Iterable[Counter], cost: float) -> None:
        """A finished request's cost, on every window it counts in (until a flush covers it)."""
        for counter in counters:
            self.pending[counter] += cost

    def synced(self, flushed: dict[Counter, float], totals: Iterable[Sequence[Any]], full: bool) -> None:
        """After a flush: ``flushed`` what it wrote per counter, ``totals`` the store's counters
        read in the same transaction (so they include it): all of the current windows when
        ``full``, else those changed lately."""
        for counter, cost in flushed.items():
            left = self.pending.get(counter, 0.0) - cost
            if abs(left) <= 1e-12:
                self.pending.pop(counter, None)
            else:
                self.pending[counter] = left
        fresh = {(r[0], r[1], r[2]): float(r[3]) for r in totals}
        if full:
            self.baseline = fresh
        else:
            self.baseline.update(fresh)


class RedisLedger:
    """The same counters in Redis, seeded from the local view when a counter is first used."""

    def __init__(self, client: Redis, pipe: AutoPipeline, local: LocalLedger, prefix: str = "llmgw:budget:") -> None:
        self.client = client  # script loads (after a Redis restart)
        self.pipe = pipe  # reservations and settles
        self.local = local
        self.prefix = prefix
        self._down_since: float | None = None
        self.unsettled: set[asyncio.Future[Any]] = set()  # settles sent, not answered yet

    def _key(self, counter: Counter) -> str:
        return self.prefix + ":".join(counter)

    def begin_reserve(self, limits: Sequence[Limit], amount: float) -> asyncio.Future[Any]:
        """Send the reservation now; ``reserved`` takes its answer."""
        keys = [self._key(c) for c, _ in limits]
        args: list[Any] = [TTL_S]
        for counter, budget in limits:
            args += [int(self.local.spent(counter) * MICRO), int(budget * MICRO)]
        args.append(int(amount * MICRO))
        return self.pipe.call("EVALSHA", RESERVE_SHA, len(keys), *keys, *args)

    async def reserved(self, sent: asyncio.Future[Any], limits: Sequence[Limit], amount: float) -> Counter | None:
        """The first counter without room, or None when all of them took ``amount``."""
        try:
            try:
                failed = await sent
            except NoScriptError:  # Redis restarted empty: load the script, then once more
                await self.client.script_load(RESERVE)
                failed = await self.begin_reserve(limits, amount)
        except STORE_ERRORS as exc:
            self._down(exc)
            return self.local.reserve(limits, amount)
        self._up()
        return limits[int(failed) - 1][0] if failed else None

    async def reserve(self, limits: Sequence[Limit], amount: float) -> Counter | None:
        return await self.reserved(self.begin_reserve(limits, amount), limits, amount)

    def settle(self, counters: Sequence[Counter], reserved: float, cost: float, remote: bool) -> None:
        """Correct a reservation to the real cost. ``remote``: it was taken in Redis (else in
        the local ledger, while Redis was down). The local view is kept either way by the caller
        (``LocalLedger.add``), as the seed for counters Redis does not hold yet. Sent, not
        awaited: a request's end (and the next request on its connection) never waits for Redis;
        ``drain`` waits for what is still unanswered, at shutdown."""
        if not remote:
            self.local.release(counters, reserved)
            return
        delta = round((cost - reserved) * MICRO)
        if not delta or not counters:
            return
        sent = self.pipe.call("EVAL", SETTLE, len(counters), *[self._key(c) for c in counters], delta)
        self.unsettled.add(sent)
        sent.add_done_callback(self._settled)

    def _settled(self, sent: asyncio.Future[Any]) -> None:
        self.unsettled.discard(sent)
        error = None if sent.cancelled() else sent.exception()
        if error is not None:
            self._down(error)

    async def drain(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the settles sent so far to be answered."""
        if self.unsettled:
            await asyncio.wait(list(self.unsettled), timeout=timeout_s)

    @property
    def up(self) -> bool:
        return self._down_since is None

    def _down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("budget counters: Redis unreachable (%s: %s); using this process's counters",
                        type(exc).__name__, exc)

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("budget counters: Redis reachable again after %.1f s",
                        time.monotonic() - self._down_since)
            self._down_since = None
