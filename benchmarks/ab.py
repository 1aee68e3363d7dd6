#!/usr/bin/env python3
"""A/B of gateway builds against the bare relay, all under load at the same time.

On a shared machine a target measured a minute after another sees a different machine: req/s moves
by tens of percent from one run to the next. Here the relay and every gateway build run pinned to
the same CPU *at the same time*, each driven by its own wrk on the other CPU, so whatever else the
machine does hits them all alike; each round reports CPU time per request (from /proc), which is
what a change to the hot path moves. Medians over the rounds, as ratios to the relay.

    git worktree add /tmp/before <commit>        # the build to compare against
    python benchmarks/ab.py /tmp/before .         # 50-chunk streams, 16 connections each
    python benchmarks/ab.py --scenario nonstream --conns 64 /tmp/before .
    python benchmarks/ab.py --scenario latency /tmp/before .
    python benchmarks/ab.py --scenario ttfc /tmp/before .
    python benchmarks/ab.py --chain --scenario nonstream --conns 32 /tmp/before .   # the full chain

Latency at one connection cannot be measured with the targets competing for the CPU, so
``--scenario latency`` takes turns instead: in each round the upstream (direct), the relay and every
build get one short wrk run each, in a rotating order, so drift in the machine spreads over all of
them. It reports the added p50 over the direct call, the figure issue targets are written in.

``--scenario ttfc`` takes turns request by request: one 50-chunk stream to each target in turn
(direct included, the order rotated every turn), the upstream holding 20 ms after the first chunk
as in ``run.py``'s probe, ``--requests`` turns per round. It reports the median time to the first
chunk over the direct call and over the relay: the 20 ms pause leaves caches cold, so this is
where work between the upstream's first bytes and the client's shows most.

Each TREE is a checkout of this repository (its gateway runs with that tree on PYTHONPATH; the
installed dependencies are shared). Needs wrk and taskset (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import (
    CHAT_PATH,
    CLIENT_KEY,
    GATEWAY_CONFIGS,
    HERE,
    MODEL,
    TTFC_MODEL,
    BenchError,
    Procs,
    checkouts,
    cpu_seconds,
    start_relay_and_checkouts,
    start_upstream,
)
from bench_load import run_async, timed_turns

SERVER_CPU, LOAD_CPU = 0, 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="+", type=Path, help="checkouts of this repository to compare")
    p.add_argument("--scenario", choices=("stream", "nonstream", "latency", "ttfc"), default="stream")
    p.add_argument("--conns", type=int, default=16, help="connections per target")
    p.add_argument("--seconds", type=int, default=5, help="per round (latency: per turn, default 2)")
    p.add_argument("--rounds", type=int, default=4, help="(latency: turns per target, default 10)")
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--requests", type=int, default=200, help="(ttfc: turns per round)")
    p.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="upstream pause between stream events (e.g. 1: every event its own read, as with a "
        "vendor sending tokens as they are generated; 0: back to back, reads hold several)",
    )
    p.add_argument("--config", type=Path, default=GATEWAY_CONFIGS["gateway"], help="gateway config for every tree")
    p.add_argument("--chain", action="store_true",
                   help="instead of --config: chain.py's full chain on memory backends (10,000 virtual keys "
                        "with budgets, limits at three levels, cache, metrics), one seeded store shared by the trees")
    args = p.parse_args(argv)
    if args.scenario == "latency":
        given = set(argv if argv is not None else sys.argv[1:])
        args.conns = 1
        args.seconds = args.seconds if {"--seconds"} & given else 2
        args.rounds = args.rounds if {"--rounds"} & given else 10
    return args


def wrk_cmd(port: int, conns: int, seconds: int, mode: str, tag: str) -> list[str]:
    return [
        "taskset",
        "-c",
        str(LOAD_CPU),
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(HERE / "wrk_post.lua"),
        f"http://127.0.0.1:{port}{CHAT_PATH}",
        "--",
        mode,
        MODEL,
        CLIENT_KEY,
        tag,
    ]


def p50_us(wrk_output: str) -> float:
    m = re.search(r"^BENCH_JSON (\{.*\})$", wrk_output, re.M)
    if not m:
        raise BenchError(f"wrk printed no BENCH_JSON line:\n{wrk_output[-500:]}")
    return float(json.loads(m.group(1))["latency_us"]["p50"])


def take_turns(targets: list[tuple[str, int, subprocess.Popen | None]], args: argparse.Namespace) -> None:
    """Non-stream at one connection, one target at a time, the order rotated every round."""
    p50: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    cpu: dict[str, list[float]] = {name: [] for name, _, p in targets if p is not None}
    for r in range(args.rounds):
        k = r % len(targets)
        for name, port, p in targets[k:] + targets[:k]:
            before = cpu_seconds(p.pid) if p is not None else 0.0
            out = subprocess.run(
                wrk_cmd(port, 1, args.seconds, "nonstream", f"ab{os.getpid()}.{r}"),
                capture_output=True,
                text=True,
                timeout=args.seconds + 60,
            ).stdout
            p50[name].append(p50_us(out))
            if p is not None:
                cpu[name].append((cpu_seconds(p.pid) - before) / max(requests_done(out), 1) * 1e6)
        print(
            f"round {r + 1}: " + "  ".join(f"{name.split(':')[0]} {p50[name][-1]:.0f}us" for name, _, _ in targets),
            flush=True,
        )
    direct = statistics.median(p50["direct"])
    relay_added = statistics.median(p50["relay"]) - direct
    print(f"\nnon-stream, 1 connection, {args.rounds} turns of {args.seconds}s per target, one target at a time\n")
    print("| target | p50 µs (median) | added over direct µs | added x relay | CPU µs/request | CPU x relay |")
    print("|---|---:|---:|---:|---:|---:|")
    relay_cpu = statistics.median(cpu["relay"])
    for name, _, p in targets:
        med = statistics.median(p50[name])
        if p is None:
            print(f"| {name} | {med:.0f} | - | - | - | - |")
            continue
        c = statistics.median(cpu[name])
        print(
            f"| {name} | {med:.0f} | {med - direct:.0f} | {(med - direct) / relay_added:.2f}x "
            f"| {c:.0f} | {c / relay_cpu:.2f}x |"
        )


def ttfc_rounds(targets: list[tuple[str, int, subprocess.Popen]], up_port: int, args: argparse.Namespace) -> None:
    """Time to first chunk, one stream request to each target in turn (see the module doc)."""
    urls = {"direct": f"http://127.0.0.1:{up_port}{CHAT_PATH}"}
    urls.update((name, f"http://127.0.0.1:{port}{CHAT_PATH}") for name, port, _ in targets)
    ttfc: dict[str, list[float]] = {name: [] for name in urls}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    warm = 10
    os.sched_setaffinity(0, {LOAD_CPU})  # the driver is the load: it stays off the servers' CPU
    for r in range(args.rounds):
        before = {name: cpu_seconds(p.pid) for name, _, p in targets}
        result = run_async(timed_turns(urls, args.requests, warm))
        for name, row in result.items():
            if row["errors"]:
                raise BenchError(f"{name}: {row['errors']} of {args.requests + warm} stream requests failed")
            ttfc[name].append(row["median_ms"])
        for name, _, p in targets:
            cpu[name].append((cpu_seconds(p.pid) - before[name]) / (args.requests + warm) * 1e6)
        line = "  ".join(f"{name.split(':')[0]} {ttfc[name][-1]:.2f}ms" for name in urls)
        print(f"round {r + 1}: {line}", flush=True)
    direct = statistics.median(ttfc["direct"])
    relay = statistics.median(ttfc["relay"])
    relay_cpu = statistics.median(cpu["relay"])
    print(f"\nfirst chunk, {args.rounds} rounds of {args.requests} turns, one stream request to each target in turn\n")
    print("| target | first chunk ms (median) | over direct ms | over relay ms | CPU µs/stream | CPU x relay |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| direct | {direct:.3f} | - | - | - | - |")
    for name, _, _ in targets:
        med, c = statistics.median(ttfc[name]), statistics.median(cpu[name])
        print(f"| {name} | {med:.3f} | {med - direct:.3f} | {med - relay:+.3f} | {c:.0f} | {c / relay_cpu:.2f}x |")


def requests_done(wrk_output: str) -> int:
    m = re.search(r"^\s*(\d+) requests in", wrk_output, re.M)
    if not m:
        raise BenchError(f"unexpected wrk output:\n{wrk_output[-500:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk") or not shutil.which("taskset"):
        print("ab.py needs wrk and taskset", file=sys.stderr)
        return 2
    try:
        trees = checkouts(args.trees)
    except BenchError as exc:
        print(f"ab.py: {exc}", file=sys.stderr)
        return 2
    procs = Procs(Path(tempfile.mkdtemp(prefix="llm-gateway-ab-")))
    try:
        up_port, env = start_upstream(
            procs, LOAD_CPU, "--chunks", str(args.chunks), "--delay-ms", str(args.delay_ms),
            "--profile", f"{TTFC_MODEL}:hold_ms=20",
        )
        config = args.config
        if args.chain:
            from chain import chain_file  # chain.py imports this module

            config = chain_file(procs, "memory")
        targets = start_relay_and_checkouts(procs, trees, config, up_port, env, SERVER_CPU)

        if args.scenario == "latency":
            take_turns([("direct", up_port, None), *targets], args)
            return 0
        if args.scenario == "ttfc":
            ttfc_rounds(targets, up_port, args)
            return 0
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in targets}
        done: dict[str, list[int]] = {name: [] for name, _, _ in targets}
        mode = "stream" if args.scenario == "stream" else "nonstream"
        for r in range(args.rounds):
            before = {name: cpu_seconds(p.pid) for name, _, p in targets}
            loads = [
                subprocess.Popen(
                    wrk_cmd(port, args.conns, args.seconds, mode, f"ab{os.getpid()}.{r}.{i}"),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for i, (_, port, _) in enumerate(targets)
            ]
            outputs = [load.communicate(timeout=args.seconds + 60)[0] for load in loads]
            for (name, _, p), out in zip(targets, outputs, strict=True):
                n = requests_done(out)
                done[name].append(n)
                cpu[name].append((cpu_seconds(p.pid) - before[name]) / max(n, 1) * 1e6)
            print(
                f"round {r + 1}: " + "  ".join(f"{name.split(':')[0]} {cpu[name][-1]:.0f}us" for name, _, _ in targets),
                flush=True,
            )

        base_cpu = statistics.median(cpu["relay"])
        base_done = statistics.median(done["relay"])
        print(
            f"\n{args.scenario}, {args.conns} connections per target, {args.rounds} rounds of {args.seconds}s, "
            "all targets at once on one CPU\n"
        )
        print("| target | CPU µs/request (median) | x relay | requests x relay |")
        print("|---|---:|---:|---:|")
        for name, _, _ in targets:
            c, d = statistics.median(cpu[name]), statistics.median(done[name])
            print(f"| {name} | {c:.0f} | {c / base_cpu:.2f}x | {d / base_done:.2f}x |")
        return 0
    except BenchError as exc:
        print(f"ab.py: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
