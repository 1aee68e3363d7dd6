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
from collections import deque
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

# ARGV: the TTL, each counter's budget, each counter's seed (in KEYS order), the amount: the budgets
# and the keys are fixed per plan (``Layout.reserve_head``), the seeds and the amount per request.
RESERVE = """
local n = #KEYS
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1 + n + i], 'NX', 'EX', ARGV[1])
end
local amount = tonumber(ARGV[2 + 2 * n])
for i, key in ipairs(KEYS) do
  local used, budget = tonumber(redis.call('GET', key)), tonumber(ARGV[1 + i])
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


class Cell:
    """One counter in this process: its flushed spend (every process's), this process's spend
    since, and its reservations in flight. A plan holds its counters' cells, so a request updates
    them without building or hashing a counter."""

    __slots__ = ("baseline", "pending", "reserved")

    def __init__(self) -> None:
        self.baseline = self.pending = self.reserved = 0.0


class Layout:
    """A plan's budget counters laid out once for the request path: their cells with their budgets
    and, with Redis (``prefix``), the fixed parts of its reservation and settle commands, keys
    encoded and budgets in micro-dollars."""

    __slots__ = ("cells", "counters", "pairs", "reserve_head", "settle_head")

    def __init__(self, limits: Sequence[Limit], local: LocalLedger, prefix: str | None = None) -> None:
        self.counters: tuple[Counter, ...] = tuple(c for c, _ in limits)
        self.cells = tuple(local.cell(c) for c in self.counters)
        self.pairs = tuple(zip(self.cells, (b for _, b in limits), strict=True))
        self.reserve_head: tuple[Any, ...] = ()
        self.settle_head: tuple[Any, ...] = ()
        if prefix is not None:
            keys = tuple((prefix + ":".join(c)).encode() for c in self.counters)
            self.reserve_head = ("EVALSHA", RESERVE_SHA, len(keys), *keys, TTL_S,
                                 *(int(b * MICRO) for _, b in limits))
            self.settle_head = ("EVAL", SETTLE, len(keys), *keys)

    def counter_of(self, cell: Cell) -> Counter:
        return self.counters[self.cells.index(cell)]


class LocalLedger:
    def __init__(self) -> None:
        self.cells: dict[Counter, Cell] = {}

    def cell(self, counter: Counter) -> Cell:
        found = self.cells.get(counter)
        if found is None:
            found = self.cells[counter] = Cell()
        return found

    def layout(self, limits: Sequence[Limit]) -> Layout:
        return Layout(limits, self)

    # Views of the cells by counter (what the store's counters, this process's spend and its
    # reservations are), for the admin API and tests; the request path uses the cells.
    @property
    def baseline(self) -> dict[Counter, float]:
        return {c: cell.baseline for c, cell in self.cells.items() if cell.baseline}

    @property
    def pending(self) -> dict[Counter, float]:
        return {c: cell.pending for c, cell in self.cells.items() if cell.pending}

    @property
    def reserved(self) -> dict[Counter, float]:
        return {c: cell.reserved for c, cell in self.cells.items() if cell.reserved}

    def spent(self, counter: Counter) -> float:
        """Settled spend: every process's flushed spend plus this process's since."""
        cell = self.cells.get(counter)
        return cell.baseline + cell.pending if cell is not None else 0.0

    def used(self, counter: Counter) -> float:
        cell = self.cells.get(counter)
        return cell.baseline + cell.pending + cell.reserved if cell is not None else 0.0

    @staticmethod
    def reserve(layout: Layout, amount: float) -> Counter | None:
        """Reserve ``amount`` on every counter, or on none: the first counter without room (a
        counter already at its budget has no room, even for a request priced at nothing)."""
        for cell, budget in layout.pairs:
            used = cell.baseline + cell.pending + cell.reserved
            if used >= budget or used + amount > budget:
                return layout.counter_of(cell)
        for cell, _ in layout.pairs:
            cell.reserved += amount
        return None

    @staticmethod
    def release(cells: Iterable[Cell], reserved: float) -> None:
        for cell in cells:
            left = cell.reserved - reserved
            cell.reserved = left if left > 1e-12 else 0.0

    @staticmethod
    def settle(windows: Iterable[Cell], cost: float, cells: Iterable[Cell], reserved: float) -> None:
        """A finished request: its cost on every window it counts in (``add``), and its
        reservation off its counters (``release``), in one call."""
        if cost:
            for cell in windows:
                cell.pending += cost
        for cell in cells:
            left = cell.reserved - reserved
            cell.reserved = left if left > 1e-12 else 0.0

    @staticmethod
    def add(windows: Iterable[Cell], cost: float) -> None:
        """A finished request's cost, on every window it counts in (until a flush covers it)."""
        for cell in windows:
            cell.pending += cost

    def synced(self, flushed: dict[Counter, float], totals: Iterable[Sequence[Any]], full: bool,
               current: Sequence[str]) -> None:
        """After a flush: ``flushed`` what it wrote per counter, ``totals`` the store's counters
        read in the same transaction (so they include it): all of the current windows
        (``current``: their labels) when ``full``, else those changed lately."""
        for counter, cost in flushed.items():
            cell = self.cell(counter)
            left = cell.pending - cost
            cell.pending = 0.0 if abs(left) <= 1e-12 else left
        fresh = {(r[0], r[1], r[2]): float(r[3]) for r in totals}
        if full:  # every window changed (a new day): the store's totals are all there is
            for counter, cell in list(self.cells.items()):
                cell.baseline = 0.0
                # A past window's counter is dropped once nothing of this process is in it: no
                # current plan holds its cell (plans are made again when the day turns).
                if counter[2] not in current and not cell.pending and not cell.reserved:
                    del self.cells[counter]
        for counter, value in fresh.items():
            self.cell(counter).baseline = value


class RedisLedger:
    """The same counters in Redis, seeded from the local view when a counter is first used."""

    def __init__(self, client: Redis, pipe: AutoPipeline, local: LocalLedger, prefix: str = "llmgw:budget:") -> None:
        self.client = client  # script loads (after a Redis restart)
        self.pipe = pipe  # reservations and settles
        self.local = local
        self.prefix = prefix
        self._down_since: float | None = None
        self.up = True  # Redis answered the last command that was awaited
        # Settles sent, oldest first, until their answers are looked at: each settle sweeps the
        # answered ones off the front (replies come in the order sent), so a settle needs no
        # callback of its own on the loop.
        self.unsettled: deque[asyncio.Future[Any]] = deque()

    def layout(self, limits: Sequence[Limit]) -> Layout:
        return Layout(limits, self.local, self.prefix)

    def begin_reserve(self, layout: Layout, amount: float) -> asyncio.Future[Any]:
        """Send the reservation now; ``reserved`` (or ``answer``, once it is in) takes its answer.
        Per request only the seeds (the local view, for counters Redis does not hold yet) and the
        amount are added to the plan's command."""
        args = [*layout.reserve_head]
        for cell in layout.cells:
            args.append(int((cell.baseline + cell.pending) * MICRO))
        args.append(int(amount * MICRO))
        return self.pipe.call(*args)

    def answer(self, sent: asyncio.Future[Any], layout: Layout) -> Counter | None:
        """The answer of a reservation whose reply is in (``sent.done()``, no error): the first
        counter without room, or None when all of them took the amount."""
        if not self.up:
            self._up()
        failed = sent.result()
        return layout.counters[failed - 1] if failed else None

    async def reserved(self, sent: asyncio.Future[Any], layout: Layout, amount: float) -> Counter | None:
        """The first counter without room, or None when all of them took ``amount``."""
        try:
            try:
                await sent
            except NoScriptError:  # Redis restarted empty: load the script, then once more
                await self.client.script_load(RESERVE)
                sent = self.begin_reserve(layout, amount)
                await sent
        except STORE_ERRORS as exc:
            self._down(exc)
            return self.local.reserve(layout, amount)
        return self.answer(sent, layout)

    async def reserve(self, layout: Layout, amount: float) -> Counter | None:
        return await self.reserved(self.begin_reserve(layout, amount), layout, amount)

    def settle(self, layout: Layout, reserved: float, cost: float, remote: bool) -> None:
        """Correct a reservation to the real cost. ``remote``: it was taken in Redis (else in
        the local ledger, while Redis was down). The local view is kept either way by the caller
        (``LocalLedger.add``), as the seed for counters Redis does not hold yet. Sent, not
        awaited: a request's end (and the next request on its connection) never waits for Redis;
        ``drain`` waits for what is still unanswered, at shutdown."""
        if not remote:
            self.local.release(layout.cells, reserved)
            return
        delta = round((cost - reserved) * MICRO)
        if not delta or not layout.cells:
            return
        unsettled = self.unsettled
        unsettled.append(self.pipe.call(*layout.settle_head, delta))
        while unsettled[0].done():
            sent = unsettled.popleft()
            if not sent.cancelled() and sent.exception() is not None:
                self._settled(sent)
            if not unsettled:
                break

    def _settled(self, sent: asyncio.Future[Any]) -> None:
        """An answered settle: an error is Redis down (and the exception is taken, not left to be
        logged as never retrieved)."""
        error = None if sent.cancelled() else sent.exception()
        if error is not None:
            self._down(error)

    async def drain(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the settles sent so far to be answered."""
        if self.unsettled:
            await asyncio.wait(list(self.unsettled), timeout=timeout_s)
        kept = deque(sent for sent in self.unsettled if not sent.done())
        for sent in self.unsettled:
            if sent.done():
                self._settled(sent)
        self.unsettled = kept

    def _down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.up = False
            log.warning("budget counters: Redis unreachable (%s: %s); using this process's counters",
                        type(exc).__name__, exc)

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("budget counters: Redis reachable again after %.1f s",
                        time.monotonic() - self._down_since)
            self._down_since = None
            self.up = True
