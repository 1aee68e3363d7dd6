"""The supervisor's shared metrics directory: made, exported to the workers, and cleaned up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.multiproc_metrics import ENV, shared_metrics_dir


def test_a_temporary_directory_is_made_exported_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with shared_metrics_dir() as path:
        assert os.environ[ENV] == path and Path(path).is_dir()
        (Path(path) / "counter_123.db").write_bytes(b"x")
    assert ENV not in os.environ
    assert not Path(path).exists()


def test_an_operators_directory_is_kept_but_emptied_of_old_values(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"an earlier run")
    (tmp_path / "notes.txt").write_text("not ours")
    with shared_metrics_dir() as path:
        assert path == str(tmp_path)
        assert not (tmp_path / "counter_1.db").exists()
    assert (tmp_path / "notes.txt").exists() and os.environ[ENV] == str(tmp_path)


class FakeProcess:
    """Stands in for a worker process that has exited with ``exitcode``."""

    def __init__(self, pid: int, exitcode: int | None = None) -> None:
        self.pid, self.exitcode, self.name = pid, exitcode, f"llm-gateway-{pid}"


def test_a_dead_worker_is_replaced_but_not_in_a_loop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gateway import server

    pids = iter(range(1000, 2000))
    monkeypatch.setattr(server.Workers, "spawn", lambda self, i: FakeProcess(next(pids)))
    workers = server.Workers(("gateway.yaml", None, None, True), str(tmp_path))
    workers.start(2)
    for _ in range(server.MAX_RESTARTS + 2):  # worker 0 keeps dying at once
        dead = workers.procs[0]
        dead.exitcode = 1
        workers.reap(0, dead)
    assert len(workers.restarts) == server.MAX_RESTARTS
    assert workers.procs[0].exitcode == 1  # the last one stays dead: the supervisor exits 1 later
    assert workers.procs[1].exitcode is None  # the other worker is untouched
    workers.stopping = True
    workers.procs[1].exitcode = 0
    workers.reap(1, workers.procs[1])
    assert workers.procs[1].exitcode == 0  # a worker stopped on SIGTERM is not replaced
