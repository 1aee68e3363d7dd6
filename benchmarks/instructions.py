#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: the relay and gateway builds, one after the other.

Time on a shared machine drifts by tens of percent within minutes, which buries changes of a few
percent (``ab.py`` shares out the drift, it does not remove it). An instruction count does not
drift: two runs of the same build agree to within about 0.5%, so it shows whether a change took
work off the hot path. It is not a speed measure on its own: ``--sim`` adds callgrind's cache and
branch simulation, which is how a build that executes only a few percent more instructions than
the relay can still need a quarter more time (it misses caches and branch predictions more).

    python benchmarks/instructions.py .                       # 50-chunk streams, 16 connections
    python benchmarks/instructions.py --sim /tmp/before .     # also simulated misses
    python benchmarks/instructions.py --scenario nonstream --conns 1 .
    python benchmarks/instructions.py --scenario nonstream --conns 32 --requests 1000 --chain memory /tmp/before .

With ``--chain`` count 1,000 requests or more: under valgrind a request takes ~50x its time, so
once-a-second work (the store's poll, settle batches, breaker probes) weighs more per request in a
short count (the Redis chain: ~1.75M instructions per request over 300 requests, ~1.39M over 1,000).

Each server runs under ``valgrind --tool=callgrind --instr-atstart=no``: start-up and a warm-up
(``--warmup`` requests) run uninstrumented, then ``callgrind_control`` counts exactly
``--requests`` requests from a fixed-count aiohttp driver, and dumps. The upstream runs natively,
so a server reads the upstream's bytes as they pile up (whole streams per read), as under load.
Needs valgrind (``apt-get install -y valgrind``); each target takes 20-60 s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench_common import (
    CHAT_PATH,
    GATEWAY_CONFIGS,
    HERE,
    MODEL,
    BenchError,
    Procs,
    checkouts,
    free_port,
    start_upstream,
    wait_ready,
)
from bench_load import py_load, run_async
from chain import chain_file

#: callgrind's event names and how the table calls them.
EVENTS = {
    "Ir": "instructions",
    "I1mr": "L1 instruction misses",
    "D1mr": "L1 data read misses",
    "D1mw": "L1 data write misses",
    "Bcm": "conditional branch mispredicts",
    "Bim": "indirect branch mispredicts",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="+", type=Path, help="checkouts of this repository to count")
    p.add_argument("--scenario", choices=("stream", "nonstream"), default="stream")
    p.add_argument("--conns", type=int, default=16, help="concurrent connections of the driver")
    p.add_argument("--requests", type=int, default=400, help="requests counted per target")
    p.add_argument("--warmup", type=int, default=200, help="uninstrumented requests before counting")
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--sim", action="store_true", help="simulate caches and branch prediction too (slower)")
    p.add_argument("--no-relay", action="store_true", help="count the trees only")
    p.add_argument("--config", type=Path, default=GATEWAY_CONFIGS["gateway"], help="gateway config for every tree")
    p.add_argument("--chain", choices=("memory", "redis"),
                   help="instead of --config: chain.py's full chain (10,000 virtual keys with budgets, limits at three "
                        "levels, cache, metrics), its store seeded in the run's directory; redis: a redis-server too")
    return p.parse_args(argv)


def parse_totals(dump: str) -> dict[str, int]:
    """The event totals of one callgrind dump (its ``events:`` and ``totals:``/``summary:`` lines)."""
    names: list[str] | None = None
    for line in dump.splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith(("totals:", "summary:")) and names is not None:
            values = [int(v) for v in line.split()[1:]]
            return dict(zip(names, values + [0] * (len(names) - len(values)), strict=True))
    raise BenchError("callgrind dump without events and totals")


def count(
    procs: Procs, name: str, cmd: list[str], cwd: Path, env: dict[str, str], args: argparse.Namespace
) -> dict[str, float]:
    """Events per request while the server at ``cmd`` answers ``args.requests`` requests."""
    out = procs.logdir / f"{name}.callgrind"
    # A port the kernel picks: with a fixed preference, two counts run at once could both take
    # it, and the gateway's SO_REUSEPORT would share one count's requests between both servers.
    port = free_port(0)
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *(["--cache-sim=yes", "--branch-sim=yes"] if args.sim else []),
    ]
    server = procs.start(name, [*valgrind, *cmd, "--port", str(port)], None, env, cwd=cwd)
    wait_ready(name, server, f"http://127.0.0.1:{port}/health", procs, 300)
    url = f"http://127.0.0.1:{port}{CHAT_PATH}"
    stream = args.scenario == "stream"
    run_async(py_load(url, args.conns, 600, args.warmup, stream, MODEL))
    procs.run(f"{name}-on", ["callgrind_control", "--instr=on", str(server.pid)], timeout=60)
    done = run_async(py_load(url, args.conns, 600, args.requests, stream, MODEL))
    procs.run(f"{name}-dump", ["callgrind_control", "--dump", str(server.pid)], timeout=120)
    if done["errors"] or not done["requests"]:
        raise BenchError(f"{name}: {done['errors']} of the counted requests failed")
    dumps = sorted(out.parent.glob(out.name + ".*"))
    if not dumps:
        raise BenchError(f"{name}: callgrind wrote no dump\n{procs.log_tail(name)}")
    totals = parse_totals(dumps[-1].read_text(errors="replace"))
    return {event: value / done["requests"] for event, value in totals.items()}


def table(results: dict[str, dict[str, float]], base: str | None) -> str:
    events = [e for e in EVENTS if any(e in r for r in results.values())]
    lines = ["| target | " + " | ".join(f"{EVENTS[e]} / request" for e in events) + " |"]
    lines.append("|---|" + "---:|" * len(events))
    for name, per_request in results.items():
        cells = []
        for e in events:
            cell = f"{per_request.get(e, 0):,.0f}"
            if base is not None and results[base].get(e):
                cell += f" ({per_request.get(e, 0) / results[base][e]:.3f}x)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if not shutil.which(tool)]
    if missing:
        print(f"instructions.py needs {' and '.join(missing)} (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    try:
        trees = checkouts(args.trees)
    except BenchError as exc:
        print(f"instructions.py: {exc}", file=sys.stderr)
        return 2
    procs = Procs(Path(tempfile.mkdtemp(prefix="llm-gateway-instructions-")))
    py = sys.executable  # the interpreter itself (a venv's is a link to it), never a shell shim
    results: dict[str, dict[str, float]] = {}
    try:
        # Kernel-chosen ports (see count()): with the usual ones, a second count run at once would
        # find them taken and use the first run's upstream and Redis, until that run ends.
        up_port, env = start_upstream(procs, None, "--chunks", str(args.chunks), port=free_port(0))
        config = (chain_file(procs, args.chain, slow_start=True, redis_port=free_port(0)) if args.chain
                  else args.config.resolve())
        if not args.no_relay:
            relay = [py, str(HERE / "relay.py"), "--upstream", f"http://127.0.0.1:{up_port}"]
            results["relay"] = count(procs, "relay", relay, HERE, env, args)
            print(f".. relay: {results['relay']['Ir']:,.0f} instructions per request", flush=True)
        for i, tree in enumerate(trees):
            name = f"{i}:{tree}"
            serve = [py, "-m", "gateway", "serve", "--config", str(config)]
            results[name] = count(procs, f"gateway-{i}", serve, tree, {**env, "PYTHONPATH": str(tree)}, args)
            print(f".. {name}: {results[name]['Ir']:,.0f} instructions per request", flush=True)
        print(f"\n{args.scenario}, {args.conns} connections, {args.requests} requests counted per target "
              f"(callgrind{', cache and branch simulation' if args.sim else ''})\n")
        print(table(results, None if args.no_relay else "relay"))
        return 0
    except BenchError as exc:
        print(f"instructions.py: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
