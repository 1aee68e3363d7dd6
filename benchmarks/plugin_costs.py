#!/usr/bin/env python3
"""Where a gateway's time goes, per plugin: several gateways sampled side by side.

    python benchmarks/plugin_costs.py                                   # gateway vs gateway-chain-10k
    python benchmarks/plugin_costs.py --targets gateway,gateway-chain-10k --before /tmp/before
    python benchmarks/plugin_costs.py --scenario stream --seconds 15

Every target (a benchmark config, on this checkout and, with ``--before``, on another) runs pinned
to one CPU at the same time, each driven by its own wrk on the other CPU, and is sampled by py-spy
(``pip install py-spy``) for the same seconds. Each sample goes to the innermost frame of the
gateway's own code on its stack -- a plugin (``ratelimit``, ``cache``, ``governance``...), hook
calling (``gateway/hookcall.py``), or the core (``gateway/``, which includes the aiohttp client and
server work it calls) -- and anything outside a request (the event loop itself) to ``loop``.
Reported: samples per 1,000 requests of each group, per target. All targets share the CPU, so the
samples measure time spent runnable, not CPU time alone; compare groups across targets of one run.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ab import LOAD_CPU, SERVER_CPU
from bench_common import (
    CHAIN_TARGETS,
    CHAT_PATH,
    CLIENT_KEY,
    GATEWAY_CONFIGS,
    HERE,
    MODEL,
    BenchError,
    Procs,
    free_port,
    start_upstream,
    wait_ready,
)
from run import chain_redis_port, chain_target_config

GROUPS = (  # (group, path fragment of the module), first match wins
    ("ratelimit", "plugins/ratelimit"), ("cache", "plugins/cache"), ("governance", "plugins/governance/"),
    ("auth", "plugins/auth.py"), ("metrics", "plugins/metrics"), ("providers", "plugins/providers/"),
    ("dialects", "plugins/dialects/"), ("other plugins", "plugins/"), ("hook calls", "gateway/hookcall.py"),
    ("core", "gateway/"),
)
# The frames under which the event loop runs: below them only, a sample is inside a request.
RUNNER = frozenset({"gateway/__main__.py", "gateway/cli.py", "gateway/server.py"})


def group_of(stack: list[str], root: str) -> str:
    """The group of the innermost frame in this checkout's code; ``loop`` when there is none."""
    for frame in reversed(stack):
        # py-spy shortens a path to the sys.path entry it is under; the gateway runs from the
        # checkout (sys.path[0] == ""), so its modules show as gateway/... and plugins/...
        rel = frame.rpartition(" (")[2].split(":")[0].removeprefix(root)
        if rel in RUNNER:
            continue
        for group, fragment in GROUPS:
            if rel.startswith(fragment):
                return group
    return "loop"


def attribute(raw: Path, root: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack:
            counts[group_of(stack.split(";"), root)] += int(n)
    return counts


def config_for(name: str, redis_port: int, logdir: Path) -> Path:
    if name in CHAIN_TARGETS:
        return chain_target_config(name, redis_port, logdir)
    return GATEWAY_CONFIGS[name]


def wrk(port: int, args: argparse.Namespace, seconds: int, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{args.conns}", f"-d{seconds}s", "-s",
         str(HERE / "wrk_post.lua"), f"http://127.0.0.1:{port}{CHAT_PATH}", "--", args.scenario, MODEL,
         CLIENT_KEY, tag],
        stdout=subprocess.PIPE, text=True)


def done(output: str) -> int:
    m = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not m:
        raise BenchError(f"unexpected wrk output:\n{output[-400:]}")
    return int(m.group(1))


def measure(args: argparse.Namespace, procs: Procs) -> list[tuple[str, dict[str, float]]]:
    redis_port = chain_redis_port(procs) if set(args.targets) & set(CHAIN_TARGETS) else 0
    _, env = start_upstream(procs, LOAD_CPU, "--chunks", "50")
    trees = [("", HERE.parent)] + ([("before:", args.before.resolve())] if args.before else [])
    targets = []
    port = free_port(18930)
    for label, tree in trees:
        for name in args.targets:
            port = free_port(port + 1)
            config = config_for(name, redis_port, procs.logdir)
            proc = procs.start(f"{label}{name}".replace(":", "-"), [
                sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                SERVER_CPU, {**env, "PYTHONPATH": str(tree)}, cwd=tree)
            wait_ready(name, proc, f"http://127.0.0.1:{port}/health", procs, 120)
            targets.append((f"{label}{name}", port, proc, str(tree) + "/"))
    for w in [wrk(port, args, 2, "warm") for _, port, _, _ in targets]:
        w.communicate()
    raws = [procs.logdir / f"{i}.raw" for i in range(len(targets))]
    spies = [subprocess.Popen(["py-spy", "record", "-r", "200", "-d", str(args.seconds + 1), "--format", "raw",
                               "-o", str(raw), "--pid", str(proc.pid), "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for (_, _, proc, _), raw in zip(targets, raws, strict=True)]
    time.sleep(0.5)
    loads = [wrk(port, args, args.seconds, f"pc{i}") for i, (_, port, _, _) in enumerate(targets)]
    requests = [done(w.communicate()[0]) for w in loads]
    for spy in spies:
        spy.wait(timeout=args.seconds + 60)
    return [(name, {g: n * 1000 / max(reqs, 1) for g, n in attribute(raw, root).items()})
            for (name, _, _, root), raw, reqs in zip(targets, raws, requests, strict=True)]


def report(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    groups = [g for g, _ in GROUPS] + ["loop"]
    seen = [g for g in groups if any(r.get(g) for _, r in rows)]
    print(f"\npy-spy samples per 1,000 requests ({args.scenario}, {args.conns} connections per target, "
          f"{args.seconds} s, all targets at once)\n")
    print("| group | " + " | ".join(name for name, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for g in seen:
        print(f"| {g} | " + " | ".join(f"{r.get(g, 0.0):.1f}" for _, r in rows) + " |")
    print("| **total** | " + " | ".join(f"**{sum(r.values()):.1f}**" for _, r in rows) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default="gateway,gateway-chain-10k",
                   type=lambda s: [t for t in s.split(",") if t],
                   help="configs: " + ",".join([*GATEWAY_CONFIGS, *CHAIN_TARGETS]))
    p.add_argument("--before", type=Path, help="another checkout: the same targets on its code, side by side")
    p.add_argument("--scenario", choices=("nonstream", "stream"), default="nonstream")
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--seconds", type=int, default=10)
    args = p.parse_args(argv)
    unknown = set(args.targets) - set(GATEWAY_CONFIGS) - set(CHAIN_TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    for tool in ("wrk", "taskset", "py-spy"):
        if not shutil.which(tool):
            print(f"plugin_costs.py needs {tool} on PATH", file=sys.stderr)
            return 2
    procs = Procs(Path(tempfile.mkdtemp(prefix="llm-gateway-costs-")))
    try:
        report(measure(args, procs), args)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
