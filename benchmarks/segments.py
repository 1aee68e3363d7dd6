#!/usr/bin/env python3
"""Time inside each server between the bytes that wake it and the bytes it sends on: the relay and
gateway builds, taking turns request by request.

A proxied request has two stretches of the server's own work on its critical path: from the
client's request to the request sent upstream (``in -> upstream``), and from the upstream's first
bytes to the first bytes written to the client (``upstream -> out``). Everything else a client
waits for is other processes and the wake-ups between them, the same for every build. Each server
is started with ``benchmarks/segments_site`` on its path, which times both stretches in-process
(see its docstring); the driver takes turns as ``ab.py --scenario ttfc`` does, so all targets see
the same machine.

    git worktree add /tmp/before <commit>
    python benchmarks/segments.py /tmp/before .                    # streams, 20 ms pause after chunk 1
    python benchmarks/segments.py --scenario nonstream --pause-ms 20 /tmp/before .
    python benchmarks/segments.py --marks gateway.dispatch:relay_read,gateway.handler:stream .

``--marks`` adds, per named function (``module:Qualified.name``), the median time from its
stretch's start to the function's entry: a profile of the critical path in time, not in calls.
The patches add a few µs per mark. Needs taskset (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench_common import (
    CHAT_PATH,
    GATEWAY_CONFIGS,
    HERE,
    TTFC_MODEL,
    BenchError,
    Procs,
    checkouts,
    start_relay_and_checkouts,
    start_upstream,
)
from bench_load import run_async, timed_turns

SERVER_CPU, LOAD_CPU = 0, 1
SITE = HERE / "segments_site"
SEGMENTS = ("in -> upstream", "upstream -> out")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="+", type=Path, help="checkouts of this repository to time")
    p.add_argument("--scenario", choices=("stream", "nonstream"), default="stream")
    p.add_argument("--requests", type=int, default=300, help="turns per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pause-ms", type=float, default=0.0, help="(nonstream) idle time after each request")
    p.add_argument("--marks", default="", help="functions to time the entry of, module:Qualified.name,...")
    p.add_argument("--config", type=Path, default=GATEWAY_CONFIGS["gateway"], help="gateway config for every tree")
    return p.parse_args(argv)


def collect(targets: list[tuple[str, int, object]], outdir: Path) -> dict[str, dict]:
    """Ask every server for its medians (SIGUSR2) and read them back."""
    for name, _, proc in targets:
        (outdir / f"{name_file(name)}.json").unlink(missing_ok=True)
        os.kill(proc.pid, signal.SIGUSR2)  # type: ignore[attr-defined]
    results: dict[str, dict] = {}
    deadline = time.monotonic() + 10
    for name, _, _ in targets:
        path = outdir / f"{name_file(name)}.json"
        while not path.exists() or not path.stat().st_size:
            if time.monotonic() > deadline:
                raise BenchError(f"{name} wrote no segment timings")
            time.sleep(0.05)
        time.sleep(0.05)  # let the writer finish
        results[name] = json.loads(path.read_text())
    return results


def name_file(name: str) -> str:
    return name.split(":")[0]


def table(rounds: list[dict[str, dict]], names: list[str]) -> str:
    """Medians over the rounds of each segment's median, and the gateway builds' differences."""
    def med(name: str, seg: str) -> float:
        values = sorted(r[name][seg]["median_us"] for r in rounds if r[name][seg]["median_us"] is not None)
        return values[len(values) // 2] if values else float("nan")

    lines = [
        "| target | in -> upstream µs | upstream -> out µs | both µs | over relay µs |",
        "|---|---:|---:|---:|---:|",
    ]
    relay = med("relay", SEGMENTS[0]) + med("relay", SEGMENTS[1])
    for name in names:
        a, b = med(name, SEGMENTS[0]), med(name, SEGMENTS[1])
        lines.append(f"| {name} | {a:.0f} | {b:.0f} | {a + b:.0f} | {a + b - relay:+.0f} |")
    marked = [(name, mark, seg, t) for name in names
              for mark, per_segment in (rounds[-1][name].get("marks") or {}).items()
              for seg, t in per_segment.items()]
    if marked:
        lines += ["", "| target | function entered | stretch | at µs (last round) |", "|---|---|---|---:|"]
        lines += [f"| {name_file(name)} | {mark} | {seg} | +{t:.0f} |" for name, mark, seg, t in marked]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("taskset"):
        print("segments.py needs taskset", file=sys.stderr)
        return 2
    try:
        trees = checkouts(args.trees)
    except BenchError as exc:
        print(f"segments.py: {exc}", file=sys.stderr)
        return 2
    outdir = Path(tempfile.mkdtemp(prefix="llm-gateway-segments-"))
    procs = Procs(outdir)
    try:
        up_port, env = start_upstream(procs, LOAD_CPU, "--profile", f"{TTFC_MODEL}:hold_ms=20")

        def site(name: str, tree: Path | None) -> dict[str, str]:
            out = outdir / f"{name_file(name)}.json"
            return {"SEGMENTS_OUT": str(out), "SEGMENTS_MARKS": args.marks if tree else "", "PYTHONPATH": str(SITE)}

        targets = start_relay_and_checkouts(procs, trees, args.config, up_port, env, SERVER_CPU, site)
        urls = {name: f"http://127.0.0.1:{port}{CHAT_PATH}" for name, port, _ in targets}
        stream = args.scenario == "stream"
        os.sched_setaffinity(0, {LOAD_CPU})  # the driver is the load: it stays off the servers' CPU
        rounds: list[dict[str, dict]] = []
        for r in range(args.rounds):
            collect(targets, outdir)  # start each round from empty samples (warm-up included)
            timed = run_async(timed_turns(urls, args.requests, 10, stream, args.pause_ms / 1000))
            for name, row in timed.items():
                if row["errors"]:
                    raise BenchError(f"{name}: {row['errors']} requests failed")
            rounds.append(collect(targets, outdir))
            line = "  ".join(
                f"{name_file(name)} {sum(rounds[-1][name][s]['median_us'] or 0 for s in SEGMENTS):.0f}us"
                for name in urls
            )
            print(f"round {r + 1}: {line}", flush=True)
        shape = "50-chunk streams, 20 ms pause after the first chunk" if stream else (
            f"non-stream, {args.pause_ms:g} ms pause after each request")
        print(f"\n{shape}; {args.rounds} rounds of {args.requests} turns; medians of the rounds' medians\n")
        print(table(rounds, list(urls)))
        return 0
    except BenchError as exc:
        print(f"segments.py: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
