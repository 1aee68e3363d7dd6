"""Smoke test for the benchmark harness (benchmarks/run.py --quick).

It only checks that a run completes and prints a markdown table whose rows hold numbers; it never asserts
a timing. The load generator is wrk when installed, else the harness's own Python driver (the output says
which) -- neither case is skipped.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"


def run_quick(targets: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--targets", targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    assert "load generator: " in proc.stdout
    return proc.stdout


def table_row(out: str, name: str) -> list[str]:
    m = re.search(rf"^\| {re.escape(name)} \| (.+) \|$", out, re.M)
    assert m, f"no table row for {name!r} in:\n{out[-3000:]}"
    return [c.strip() for c in m.group(1).split("|")]


def assert_numbers(cells: list[str], name: str) -> None:
    # ns c1 req/s, p50, p99, ns c64 req/s, its CPU us/req, stream req/s, its CPU us/stream, TTFC p50
    for idx in (0, 1, 2, 4, 7, 8, 11, 12):
        assert re.match(r"^[\d,]+(\.\d+)?", cells[idx]), f"{name}: column {idx} is {cells[idx]!r}: {cells}"


def test_bench_quick_direct_and_relay() -> None:
    out = run_quick("direct,relay")
    for name in ("direct", "relay"):
        assert_numbers(table_row(out, name), name)
    relay = table_row(out, "relay")
    assert re.match(r"^[\d.]+$", relay[-1]), f"relay RSS after load missing: {relay}"


@pytest.mark.skipif(
    importlib.util.find_spec("gateway.cli") is None,
    reason="llm-gateway not installed (gateway.cli missing): gateway targets not benchmarked",
)
def test_bench_quick_gateway() -> None:
    out = run_quick("relay,gateway,gateway-chain")
    for name in ("relay", "gateway", "gateway-chain"):
        assert_numbers(table_row(out, name), name)


@pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("taskset")), reason="benchmarks/ab.py drives wrk")
def test_ab_compares_a_checkout_with_the_relay():
    """One one-second round of benchmarks/ab.py on this checkout: a table row per target."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ab.py"), "--rounds", "1", "--seconds", "1", "--conns", "2", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    row = re.search(rf"^\| 0:{re.escape(str(ROOT))} \| (\d+) \| ([\d.]+)x \| ([\d.]+)x \|$", proc.stdout, re.M)
    assert row and int(row.group(1)) > 0, proc.stdout
    assert re.search(r"^\| relay \| \d+ \| 1\.00x \| 1\.00x \|$", proc.stdout, re.M)


@pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("taskset")), reason="benchmarks/ab.py drives wrk")
def test_ab_ttfc_takes_turns_and_reports_time_over_direct_and_relay():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ab.py"), "--scenario", "ttfc", "--rounds", "1", "--requests", "3",
         "."],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"^\| direct \| [\d.]+ \| - \| - \| - \| - \|$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\| relay \| [\d.]+ \| [\d.]+ \| \+0\.000 \| \d+ \| 1\.00x \|$", proc.stdout, re.M)
    row = re.search(rf"^\| 0:{re.escape(str(ROOT))} \| ([\d.]+) \| (-?[\d.]+) \| ([+-][\d.]+) \| \d+ \| [\d.]+x \|$",
                    proc.stdout, re.M)
    assert row and float(row.group(1)) > 0, proc.stdout


@pytest.mark.skipif(not shutil.which("taskset"), reason="benchmarks/segments.py pins the servers with taskset")
def test_segments_times_both_stretches_inside_each_server():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "segments.py"), "--rounds", "1", "--requests", "5",
         "--marks", "gateway.handler:stream", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"^\| relay \| \d+ \| \d+ \| \d+ \| \+0 \|$", proc.stdout, re.M), proc.stdout
    row = re.search(rf"^\| 0:{re.escape(str(ROOT))} \| (\d+) \| (\d+) \| \d+ \| [+-]\d+ \|$", proc.stdout, re.M)
    assert row and int(row.group(1)) > 0 and int(row.group(2)) > 0, proc.stdout
    assert re.search(r"^\| 0 \| stream \| upstream -> out \| \+\d+ \|$", proc.stdout, re.M), proc.stdout


def test_segments_table_takes_the_median_round_and_the_difference_to_the_relay():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from segments import table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def result(a: float, b: float) -> dict:
        return {"in -> upstream": {"median_us": a, "n": 9}, "upstream -> out": {"median_us": b, "n": 9}}

    rounds = [{"relay": result(500, 100), "0:gw": result(a, b)} for a, b in [(700, 300), (650, 250), (900, 260)]]
    rounds[-1]["0:gw"]["marks"] = {"f": {"upstream -> out": 42.4}}
    out = table(rounds, ["relay", "0:gw"])
    assert "| relay | 500 | 100 | 600 | +0 |" in out
    assert "| 0:gw | 700 | 260 | 960 | +360 |" in out  # each stretch's median over the rounds
    assert "| 0 | f | upstream -> out | +42 |" in out


def test_instructions_parses_callgrind_totals():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from instructions import parse_totals, table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    dump = "version: 1\nevents: Ir D1mr Bcm\nsummary: 2000 30\nfn=(1) main\n0 5 1\ntotals: 2000 30\n"
    assert parse_totals(dump) == {"Ir": 2000, "D1mr": 30, "Bcm": 0}
    rows = table({"relay": {"Ir": 1000.0, "D1mr": 10.0}, "0:/x": {"Ir": 1100.0, "D1mr": 15.0}}, "relay")
    assert "| 0:/x | 1,100 (1.100x) | 15 (1.500x) |" in rows
    assert "L1 data read misses / request" in rows
    with pytest.raises(Exception, match="without events"):
        parse_totals("version: 1\n")


@pytest.mark.skipif(not shutil.which("valgrind"), reason="benchmarks/instructions.py runs the server under valgrind")
def test_instructions_counts_a_checkout():
    """A few requests counted under callgrind: the tool starts, counts and prints a row."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "instructions.py"), "--no-relay", "--requests", "10",
         "--warmup", "5", "--conns", "2", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    row = re.search(rf"^\| 0:{re.escape(str(ROOT))} \| ([\d,]+) \|$", proc.stdout, re.M)
    assert row and int(row.group(1).replace(",", "")) > 100_000, proc.stdout


def test_report_pairs_each_pass_with_the_relays_same_pass():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_common import Target
        from bench_report import per_pass
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def target(name: str, rps: list[float], p50: list[float], ttfc: list[float]) -> Target:
        return Target(name, results={
            "st_c16": [{"rps": x} for x in rps],
            "ns_c1": [{"p50_ms": x} for x in p50],
            "ttfc": [{"ttfc_ms": x} for x in ttfc],
        })

    direct = target("direct", [3000, 3000], [0.1, 0.1], [0.5, 0.5])
    relay = target("relay", [2000, 1000], [0.5, 0.3], [1.5, 1.5])
    gateway = target("gateway", [1500, 900], [0.6, 0.3], [1.7, 1.4])
    line = per_pass(gateway, relay, direct)
    assert "stream req/s 0.75x 0.90x (median 0.82x)" in line
    assert "added p50 1.25x 1.00x (median 1.12x)" in line
    assert "first chunk over direct 1.20 ms 0.90 ms (median 1.05 ms)" in line
    assert "ns c64" not in line  # no such results: no figure
    assert per_pass(gateway, relay, None).count("added p50") == 0  # needs the direct call


@pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("taskset")), reason="benchmarks/chain.py drives wrk")
def test_chain_compares_both_rate_limit_backends_and_counts_redis_round_trips():
    """One one-second turn per target of benchmarks/chain.py, and its Redis command count: one
    admission script per request."""
    from tests.services import require_binary

    require_binary("redis-server")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chain.py"), "--rounds", "1", "--seconds", "1", "--count", "20"],
        cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in ("relay", "gateway", "chain-memory", "chain-redis"):
        assert re.search(rf"^\| {name} \| \d+ \| \d+ \|", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\| EVALSHA ADMIT \| 20 \| 1\.00 \|$", proc.stdout, re.M), proc.stdout


def test_plugin_costs_attributes_each_sample_to_the_innermost_gateway_frame(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from plugin_costs import attribute
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    runner = "<module> (gateway/__main__.py:5);serve (gateway/server.py:139);run (asyncio/runners.py:118)"
    raw = tmp_path / "x.raw"
    raw.write_text("\n".join([
        f"{runner};handle (gateway/handler.py:135);all (gateway/hookcall.py:59);"
        "acquire (plugins/ratelimit_backend.py:150);get (typing.py:1) 7",
        f"{runner};handle (gateway/handler.py:135);all (gateway/hookcall.py:59) 2",
        f"{runner};handle (/src/gw/gateway/handler.py:140);read (aiohttp/web_request.py:9) 3",
        f"{runner};lookup (/src/gw/plugins/cache_store.py:120) 4",
        f"{runner};_run (asyncio/events.py:80) 5",
    ]) + "\n")
    assert attribute(raw, "/src/gw/") == {"ratelimit": 7, "hook calls": 2, "core": 3, "cache": 4, "loop": 5}
