"""The dashboard across ``--workers N``: each worker's buffers, as files in the shared directory.

With several workers a poll reaches one of them, but the page must show them all. The
supervisor already gives every worker a private shared directory (``PROMETHEUS_MULTIPROC_DIR``,
``gateway.multiproc_metrics``); each worker writes a snapshot of its buffers there every
``WRITE_INTERVAL_S`` as ``dashboard-<pid>.json`` (written to a temporary name, then renamed, so a
reader never sees half a file), and the worker answering ``/admin/dashboard`` reads every
snapshot and adds them up. The request path never touches a file: it only fills memory.

A snapshot older than ``LIVE_S`` is a worker that is gone: its past traffic still counts in the
charts, its open streams and circuit states do not. Prometheus's own files hold cumulative
counters and histograms only, not the per-second history the charts need, hence files of our own.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.multiproc_metrics import ENV

WRITE_INTERVAL_S = 1.0
LIVE_S = 5.0
PREFIX = "dashboard-"


def shared_dir() -> Path | None:
    """The workers' shared directory; None when this process serves alone."""
    given = os.environ.get(ENV)
    return Path(given) if given else None


def write_snapshot(directory: Path, snapshot: dict[str, Any]) -> None:
    pid = os.getpid()
    final = directory / f"{PREFIX}{pid}.json"
    temporary = directory / f".{PREFIX}{pid}.tmp"
    temporary.write_bytes(orjson.dumps({**snapshot, "pid": pid, "written": time.time()}))
    os.replace(temporary, final)


def read_snapshots(directory: Path, own_pid: int) -> list[dict[str, Any]]:
    """Every other worker's last snapshot (run it off the event loop: it reads files)."""
    found = []
    for path in directory.glob(f"{PREFIX}*.json"):
        if path.name == f"{PREFIX}{own_pid}.json":
            continue
        with contextlib.suppress(OSError, orjson.JSONDecodeError):  # a worker being removed
            found.append(orjson.loads(path.read_bytes()))
    return found

