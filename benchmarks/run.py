#!/usr/bin/env python3
"""One-command side-by-side benchmark: direct upstream vs bare aiohttp relay vs llm-gateway (vs gateway
with the default plugin chain).

    python benchmarks/run.py                 # full run, all four targets
    python benchmarks/run.py --quick         # CI smoke: ~1 s per scenario, finishes well under 60 s
    python benchmarks/run.py --targets direct,relay --duration 5 --repeat 3

It starts the mock upstream (benchmarks/upstream.py), the relay (benchmarks/relay.py) and the gateway
(``python -m gateway serve``) as subprocesses, pins them with taskset when it can (relay and gateway on
one CPU, upstream + load generator + this script on the other), waits for readiness, checks each target
answers correctly, then measures every target in the same run, scenario by scenario (so that a noisy
neighbour hits all targets alike):

* ``ns c1``   non-stream chat completions over 1 connection: req/s, p50, p99 latency;
* ``ns c64``  non-stream over 64 connections: req/s;
* ``st c16``  streaming, 50 content chunks, 16 connections: req/s (a request = the whole stream);
* ``TTFC``    time to first chunk, median over sequential stream requests from a Python client; the
  upstream holds 20 ms after the first chunk, so a proxy that buffers shows up as TTFC >= 20 ms;
* CPU time (user+sys, /proc/PID/stat) of the relay/gateway process per request and per stream -- on
  a shared machine this moves much less than req/s when a neighbour takes CPU;
* RSS (VmRSS of the process and its children) of relay and gateways, idle and after the load.

Load generator: wrk with benchmarks/wrk_post.lua when wrk is installed, else an aiohttp driver in this
process (which says so in the output). Every process it started is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import (
    ALL_TARGETS,
    CHAIN_TARGETS,
    CHAT_PATH,
    DEFAULT_PORTS,
    GATEWAY_CONFIGS,
    HERE,
    MODEL,
    PY_DRIVER_QUICK_MAX,
    ROOT,
    TTFC_MODEL,
    BenchError,
    Procs,
    Target,
    cpu_seconds,
    cpu_steal,
    free_port,
    rss_mib,
    validate,
    wait_ready,
)
from bench_load import py_load, run_async, ttfc_probe, wrk_load
from bench_report import report


def machine_info() -> dict[str, str]:
    info = {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "?"
    for mod in ("aiohttp", "uvloop", "orjson"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = "not installed"
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        info["wrk"] = (out.stdout or out.stderr).split("Copyright")[0].strip()
    with contextlib.suppress(OSError):
        info["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="side-by-side benchmark: direct / relay / gateway / gateway-chain",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: 1 s per scenario, no warm-up, 50 TTFC requests (python driver: <=300 req)",
    )
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help="comma list from " + ",".join(ALL_TARGETS + CHAIN_TARGETS) + " (the last two: chain.py's)")
    p.add_argument("--duration", type=int, default=10, help="seconds per load scenario")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load per target (0 = none)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the scenario matrix N times")
    p.add_argument(
        "--aggregate",
        choices=("median", "best"),
        default="median",
        help="fold repeats into the median, or the best run (max req/s, min latency/CPU: for a noisy machine)",
    )
    p.add_argument("--conns-high", type=int, default=64)
    p.add_argument("--conns-stream", type=int, default=16)
    p.add_argument("--chunks", type=int, default=50, help="content chunks per streamed response")
    p.add_argument("--ttfc-requests", type=int, default=200)
    p.add_argument(
        "--ttfc-hold-ms",
        type=float,
        default=20.0,
        help="upstream pause after the first chunk of a TTFC stream",
    )
    p.add_argument("--driver", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--gateway-workers", type=int, default=1, help="--workers for the gateway (>1: not pinned)")
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    p.add_argument("--markdown", type=Path, help="also write machine info + table as markdown here")
    p.add_argument(
        "--strict-config",
        action="store_true",
        help="fail a gateway target whose config has keys the gateway does not know, instead of dropping them",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the subprocess logs directory")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.ttfc_requests, args.repeat = 1, 0, 50, 1
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in args.targets if t not in ALL_TARGETS + CHAIN_TARGETS]
    if bad:
        p.error(f"unknown target(s) {bad}; choose from {ALL_TARGETS + CHAIN_TARGETS}")
    if args.duration < 1:
        p.error("--duration must be >= 1 (wrk counts whole seconds)")
    return args


def plan_pinning(args: argparse.Namespace) -> tuple[int | None, int | None, str]:
    if args.no_pin:
        return None, None, "no CPU pinning (--no-pin)"
    if not shutil.which("taskset"):
        return None, None, "no CPU pinning (taskset not found)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"no CPU pinning (only CPU {cpus} available)"
    srv, load = cpus[0], cpus[1]
    return (
        srv,
        load,
        (f"taskset: relay + gateway on CPU {srv}; upstream, load generator and this script on CPU {load}"),
    )


UNKNOWN_RE = re.compile(r"^\s*([A-Za-z0-9_.\[\]-]+): unknown (?:key|section)\b", re.M)


def drop_path(data: Any, path: str) -> bool:
    """Remove ``a.b[2].c`` from nested dicts/lists; True when something was removed."""
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node = data
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and parts and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def check_config(gw: list[str], cfg: Path, env: dict[str, str]) -> tuple[int, str]:
    r = subprocess.run(
        [*gw, "check-config", str(cfg)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False
    )
    return r.returncode, (r.stdout + r.stderr).strip()


def checked_config(gw: list[str], cfg: Path, env: dict[str, str], tmp: Path, t: Target, strict: bool) -> Path:
    """``check-config`` the target's config. When the only problems are keys this gateway build does not
    know (e.g. a plugin section whose plugin is not written yet), and not --strict-config, run with those
    keys removed and say so loudly in the report."""
    rc, out = check_config(gw, cfg, env)
    if rc == 0:
        return cfg
    unknown = UNKNOWN_RE.findall(out)
    problems = [ln for ln in out.splitlines()[1:] if ln.strip()]
    if strict or not unknown or len(unknown) != len(problems):
        raise BenchError(f"check-config {cfg.name} failed: {out[-800:]}")
    import yaml

    data = yaml.safe_load(cfg.read_text())
    dropped = [p for p in unknown if drop_path(data, p)]
    reduced = tmp / f"{cfg.stem}.reduced.yaml"
    reduced.write_text(yaml.safe_dump(data, sort_keys=False))
    rc, out2 = check_config(gw, reduced, env)
    if rc != 0:
        raise BenchError(f"check-config {cfg.name} failed: {out[-600:]}; without {dropped}: {out2[-400:]}")
    t.notes.append(f"⚠ ran WITHOUT {', '.join(dropped)} from {cfg.name} (check-config: unknown to this gateway build)")
    print(f"!! {t.name}: {cfg.name} reduced, dropped {dropped}: this gateway build does not know them", flush=True)
    return reduced


def chain_redis_port(procs: Procs) -> int:
    """A redis-server for the full-chain targets (chain.py's, pinned beside the upstream)."""
    from chain import start_redis  # imports the gateway's plugins: only when a chain target is asked for

    return start_redis(procs)


def chain_target_config(name: str, redis_port: int, logdir: Path) -> Path:
    """chain.py's full-chain config (10,000 virtual keys with budgets and key limits, global and
    provider limits, cache, metrics); its governance store is seeded in ``logdir``."""
    import yaml
    from chain import chain_config

    path = logdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(chain_config("redis" if name.endswith("redis") else "memory", redis_port, logdir)))
    return path


def start_targets(args, procs: Procs, env: dict[str, str], srv_cpu, load_cpu, ports) -> tuple[list[Target], str]:
    py = sys.executable
    up_cmd = [
        py,
        str(HERE / "upstream.py"),
        "--port",
        str(ports["upstream"]),
        "--chunks",
        str(args.chunks),
        "--profile",
        f"{TTFC_MODEL}:hold_ms={args.ttfc_hold_ms}",
    ]
    upstream = procs.start("upstream", up_cmd, load_cpu, env)
    up_base = f"http://127.0.0.1:{ports['upstream']}"
    wait_ready("upstream", upstream, up_base + "/v1/models", procs, args.start_timeout)
    validate(up_base, args.chunks)

    targets = [Target(name, aggregate=args.aggregate) for name in args.targets]
    gw_version = ""
    chain_redis = chain_redis_port(procs) if set(args.targets) & set(CHAIN_TARGETS) else 0
    for t in targets:
        try:
            if t.name == "direct":
                t.base, t.cpu_proc = up_base, upstream
                continue
            port = ports[t.name]
            t.base = f"http://127.0.0.1:{port}"
            if t.name == "relay":
                t.proc = procs.start(
                    "relay",
                    [py, str(HERE / "relay.py"), "--port", str(port), "--upstream", up_base],
                    srv_cpu,
                    env,
                )
                ready = wait_ready("relay", t.proc, t.base + "/v1/models", procs, args.start_timeout)
            else:
                gw = [py, "-m", "gateway"]
                if not gw_version:
                    r = subprocess.run(
                        [*gw, "--version"],
                        capture_output=True,
                        text=True,
                        cwd=ROOT,
                        env=env,
                        timeout=60,
                        check=False,
                    )
                    if r.returncode != 0:
                        raise BenchError(
                            "gateway not runnable (`python -m gateway --version` exited "
                            f"{r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}"
                        )
                    gw_version = r.stdout.strip()
                if t.name in CHAIN_TARGETS:
                    cfg = chain_target_config(t.name, chain_redis, procs.logdir)
                else:
                    cfg = checked_config(gw, GATEWAY_CONFIGS[t.name], env, procs.logdir, t, args.strict_config)
                cpu = srv_cpu if args.gateway_workers == 1 else None
                t.proc = procs.start(
                    t.name,
                    [
                        *gw,
                        "serve",
                        "--config",
                        str(cfg),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--workers",
                        str(args.gateway_workers),
                    ],
                    cpu,
                    env,
                )
                ready = wait_ready(t.name, t.proc, t.base + "/health", procs, args.start_timeout)
            t.cpu_proc = t.proc
            t.notes.append(f"ready in {ready:.1f}s")
            t.notes += validate(t.base, args.chunks)
        except BenchError as e:
            t.error = str(e)
            print(f"!! {t.name}: {e}", file=sys.stderr, flush=True)
            if t.proc is not None and t.proc.poll() is None:
                procs._kill(t.proc, signal.SIGTERM)
    return targets, gw_version


def measure(args, procs: Procs, targets: list[Target], driver: str, load_cpu) -> None:
    scenarios = [("ns_c1", False, 1), ("ns_c64", False, args.conns_high), ("st_c16", True, args.conns_stream)]
    py_max = PY_DRIVER_QUICK_MAX if args.quick else None

    def load(t: Target, stream: bool, conns: int, seconds: int, label: str) -> dict[str, Any]:
        url = t.base + CHAT_PATH
        if driver == "wrk":
            return wrk_load(procs, url, conns, seconds, stream, MODEL, load_cpu, f"{t.name}-{label}")
        return run_async(py_load(url, conns, seconds, py_max, stream, MODEL))

    for t in targets:
        if t.alive() and t.proc is not None:
            t.rss_idle = rss_mib(t.proc.pid)
    if args.warmup > 0:
        for t in targets:
            if t.alive():
                print(f".. warm-up {t.name} ({args.warmup}s non-stream + {args.warmup}s stream)", flush=True)
                try:
                    load(t, False, 16, args.warmup, "warmup-ns")
                    load(t, True, 16, args.warmup, "warmup-st")
                except BenchError as e:
                    t.error = f"warm-up: {e}"
    for rep in range(args.repeat):
        for key, stream, conns in scenarios:
            for t in targets:
                if not t.alive():
                    continue
                cpu0 = cpu_seconds(t.cpu_proc.pid) if t.cpu_proc is not None else None
                try:
                    r = load(t, stream, conns, args.duration, f"{key}-{rep}")
                except BenchError as e:
                    t.error = f"{key}: {e}"
                    continue
                if cpu0 is not None and r["requests"]:
                    r["cpu_us_per_req"] = (cpu_seconds(t.cpu_proc.pid) - cpu0) / r["requests"] * 1e6
                t.results.setdefault(key, []).append(r)
                print(
                    f".. [{rep + 1}/{args.repeat}] {key:7s} {t.name:14s} {r['rps']:9.0f} req/s  "
                    f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                    f"cpu {r.get('cpu_us_per_req', math.nan):6.0f} us/req  errors {r['errors']}",
                    flush=True,
                )
        for t in targets:
            if not t.alive():
                continue
            r = run_async(ttfc_probe(t.base + CHAT_PATH, args.ttfc_requests, 3 if args.quick else 10))
            t.results.setdefault("ttfc", []).append(r)
            print(
                f".. [{rep + 1}/{args.repeat}] ttfc    {t.name:14s} median {r['ttfc_ms']:7.2f} ms  "
                f"stream total {r['total_ms']:7.2f} ms  errors {r['errors']}",
                flush=True,
            )
    for t in targets:
        if t.alive() and t.proc is not None:
            t.rss_after = rss_mib(t.proc.pid)




def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    if args.driver == "auto":
        driver = "wrk" if shutil.which("wrk") else "python"
    elif args.driver == "wrk" and not shutil.which("wrk"):
        print("wrk not found (apt-get install -y wrk); use --driver python", file=sys.stderr)
        return 2
    else:
        driver = args.driver
    if driver == "python" and args.driver == "auto":
        print(
            "!! wrk not found: using the Python aiohttp load driver (client-bound; ratios still valid)",
            flush=True,
        )

    srv_cpu, load_cpu, pin_desc = plan_pinning(args)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    print(f".. {pin_desc}", flush=True)
    info = machine_info()

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    ports = {name: free_port(p) for name, p in DEFAULT_PORTS.items()}
    env["BENCH_UPSTREAM_PORT"] = str(ports["upstream"])

    logdir = Path(tempfile.mkdtemp(prefix="llm-gw-bench-"))
    procs = Procs(logdir)
    rc = 0
    t_start = time.monotonic()
    try:
        targets, gw_version = start_targets(args, procs, env, srv_cpu, load_cpu, ports)
        steal0 = cpu_steal()
        measure(args, procs, targets, driver, load_cpu)
        steal1 = cpu_steal()
        info["steal"] = f"{100 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]):.1f}%"
        text = report(targets, args, info, pin_desc, driver, gw_version)
        print()
        print(text)
        print(
            f"\n(total {time.monotonic() - t_start:.0f}s; command: python benchmarks/run.py "
            f"{shlex.join(argv if argv is not None else sys.argv[1:])})",
            flush=True,
        )
        if args.markdown:
            args.markdown.write_text(text + "\n")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": info,
                        "pinning": pin_desc,
                        "driver": driver,
                        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                        "targets": {
                            t.name: {
                                "error": t.error,
                                "notes": t.notes,
                                "rss_idle_mib": t.rss_idle,
                                "rss_after_mib": t.rss_after,
                                "results": t.results,
                            }
                            for t in targets
                        },
                    },
                    indent=2,
                )
            )
        if any(t.error for t in targets):
            rc = 1
    except BenchError as e:
        print(f"!! benchmark failed: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt as e:
        print(f"!! interrupted ({e or 'Ctrl-C'}); stopping processes", file=sys.stderr)
        rc = 130
    finally:
        procs.stop_all()
        if rc == 0 and not args.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print(f".. subprocess logs kept in {logdir}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())

