"""Smoke test for benchmarks/dashboard.py: it runs end to end and prints its ratio (no timing is
asserted: the machine may be shared)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_dashboard_benchmark_runs_and_reports() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dashboard.py"), "--rounds", "2",
                           "--batch", "10"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\| on \| \d+ \| \d+ \|", proc.stdout), proc.stdout
    assert re.search(r"ratio on/off .*: wall [\d.]+, CPU [\d.]+", proc.stdout), proc.stdout
