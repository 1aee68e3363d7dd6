"""Write-behind for spend records: a bounded buffer in memory, flushed to the store in batches.

A finished request appends one ``SpendEvent`` (no I/O, no await). Every ``interval_s`` (or sooner
once ``BATCH`` events wait) the writer hands up to ``BATCH`` events to the store in one
transaction, off the event loop, which also updates the daily rollups and the budget counters and
reads back what every process has spent. If the store fails, the batch goes back to the front of
the buffer and is retried on the next beat; events beyond ``max_events`` are counted as dropped
(``llm_gateway_spend_dropped_total``), never waited for. Raw records older than the retention
period are deleted a small batch per beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from plugins.governance.budgets import LocalLedger
from plugins.governance.records import PERIODS, SpendEvent, window
from plugins.governance.store import Store, StoreError, per_counter

log = logging.getLogger("llm_gateway.governance.spend")
BATCH = 5000
PRUNE_BATCH = 5000
PRUNE_EVERY_S = 60.0
SYNC_MARGIN_S = 2.0  # counters changed this long before the last read are read again (commit lag, clock skew)


class SpendWriter:
    def __init__(self, store: Store, ledger: LocalLedger, max_events: int, interval_s: float,
                 retention_days: int) -> None:
        self.store = store
        self.ledger = ledger
        self.max_events = max_events
        self.interval_s = interval_s
        self.retention_s = retention_days * 86400.0
        self.buffer: deque[SpendEvent] = deque()
        self.dropped = 0
        self.written = 0
        self.healthy = True
        self.flushed = asyncio.Event()  # set after every successful flush (tests wait on it)
        self._wake = asyncio.Event()
        self._buckets: tuple[str, ...] = ()
        self._last_sync = 0.0
        self._next_prune = 0.0
        self._stopping = False
        self._in_flight = 0

    @property
    def waiting(self) -> int:
        """Records not yet in the store: buffered, and the batch being written."""
        return len(self.buffer) + self._in_flight

    def add(self, event: SpendEvent) -> None:
        waiting = len(self.buffer)
        if waiting >= self.max_events:
            self.dropped += 1
            return
        self.buffer.append(event)
        if waiting == BATCH - 1:
            self._wake.set()

    async def run(self) -> None:
        """Flush on every beat until ``stop()``; a flush in progress is never cut off (it may
        be mid-transaction), so nothing is lost or written twice."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if self._stopping:
                return
            await self.flush()
            await self.prune()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def flush(self) -> bool:
        """Write one batch (or just re-read the counters); False when the store failed."""
        batch = [self.buffer.popleft() for _ in range(min(BATCH, len(self.buffer)))]
        now = time.time()
        buckets = (*(window(p, now) for p in PERIODS), "all")
        full = buckets != self._buckets
        since = 0.0 if full else self._last_sync - SYNC_MARGIN_S
        self._in_flight = len(batch)
        flushed = per_counter(batch)  # written to the store's counters, and taken off this process's pending
        try:
            totals = await self.store.write_spend(batch, buckets, since, flushed)
        except StoreError as exc:
            self._in_flight = 0
            self.buffer.extendleft(reversed(batch))
            if self.healthy:
                log.warning("spend store unavailable (%s); buffering up to %d records", exc, self.max_events)
            self.healthy = False
            return False
        if not self.healthy:
            log.warning("spend store available again; %d records waiting", len(self.buffer))
        self.healthy = True
        self._in_flight = 0
        self._buckets, self._last_sync = buckets, now
        self.ledger.synced(flushed, totals, full, buckets)
        self.written += len(batch)
        self.flushed.set()
        self.flushed = asyncio.Event()
        return True

    async def drain(self, deadline_s: float) -> None:
        """At shutdown: write what is buffered, for at most ``deadline_s``."""
        end = time.monotonic() + deadline_s
        while self.buffer and time.monotonic() < end:
            if not await self.flush():
                await asyncio.sleep(min(0.2, max(0.0, end - time.monotonic())))

    async def prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune or not self.healthy:
            return
        try:
            left = await self.store.prune(time.time() - self.retention_s, PRUNE_BATCH)
        except StoreError:
            return
        self._next_prune = now if left else now + PRUNE_EVERY_S

