"""Smoke test for benchmarks/governance.py: it runs end to end and prints its numbers (no timing
is asserted: the machine may be shared)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_governance_benchmark_runs_and_reports() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "governance.py"), "--keys", "500",
                           "--rounds", "3", "--batch", "20"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\| governed \| \d+ \| \d+ \|", proc.stdout), proc.stdout
    assert re.search(r"governance hooks alone .*: -?[\d.]+ µs CPU per request", proc.stdout), proc.stdout
