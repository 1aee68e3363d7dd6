"""Metrics shared by ``--workers N`` processes: prometheus-client's multiprocess mode.

The supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts the workers
(``gateway.multiproc_metrics``), so in each worker prometheus-client keeps every value in a
memory-mapped file there, and a scrape reads and sums all the workers' files. Counters and
histograms add up; ``llm_gateway_streams_in_flight`` is a ``livesum`` gauge (the sum over live
workers: a dead worker's streams are gone with it).

The per-request series (requests, tokens, cache outcomes, both histograms) still add up in
tallies first, as with one process (``plugins.metrics_tally``); a write to the mmap file takes a
lock and costs about three times an in-memory increment, which a request need not pay. Instead
every worker writes them (and its count of open streams) every ``FLUSH_INTERVAL_S``, when it
shuts down, and before it answers a scrape itself: a scrape sees another worker's requests at
most ``FLUSH_INTERVAL_S`` late.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

# How stale another worker's per-request counters may be in a scrape.
FLUSH_INTERVAL_S = 0.5


def shared_values() -> bool:
    """Whether this process keeps metric values in the shared directory (decided by
    prometheus-client when it was imported, from ``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def scrape_all_workers() -> bytes:
    """The exposition of every worker's values, summed. Reads files: run it off the event loop."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry)


class PeriodicFlush:
    """Calls ``flush`` every ``FLUSH_INTERVAL_S`` on the event loop, and once more when stopped."""

    def __init__(self, flush: Callable[[], None], interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.flush = flush
        self.interval_s = interval_s
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Idempotent: ``gateway_startup`` runs again for each configuration reload."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop(), name="metrics-flush")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        self.flush()
