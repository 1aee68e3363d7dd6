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
