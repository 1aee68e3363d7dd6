"""The directory where ``--workers N`` processes share their metrics (prometheus-client's
multiprocess mode).

The supervisor makes it before it spawns a worker and sets ``PROMETHEUS_MULTIPROC_DIR``, which the
workers inherit: each one then keeps its metric values in memory-mapped files there, and a scrape
of ``/metrics`` in any worker reads and sums them all. A dead worker's counter and histogram files
stay (its counts are part of the totals; counters never go down), its live gauges are dropped.

An operator's own ``PROMETHEUS_MULTIPROC_DIR`` (e.g. a tmpfs ``emptyDir``) is used as given, its
``*.db`` files from an earlier run removed at start; otherwise a temporary directory is made and
removed at exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    given = os.environ.get(ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):  # a previous run's counts are not this run's
            stale.unlink(missing_ok=True)
        yield given
        return
    path = tempfile.mkdtemp(prefix="llm-gateway-metrics-")
    os.environ[ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def worker_gone(pid: int, path: str) -> None:
    """Forget a dead worker's live gauges (e.g. streams in flight); its counters stay summed."""
    with contextlib.suppress(OSError):
        mark_process_dead(pid, path)
