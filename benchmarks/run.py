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
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALL_TARGETS = ("direct", "relay", "gateway", "gateway-chain")
GATEWAY_CONFIGS = {"gateway": HERE / "gateway.bench.yaml", "gateway-chain": HERE / "gateway.bench-chain.yaml"}
DEFAULT_PORTS = {"upstream": 18900, "relay": 18901, "gateway": 18902, "gateway-chain": 18903}
CLIENT_KEY = "sk-bench-client"  # the chain config's client key; the other targets accept any key
MODEL = "bench-model"
TTFC_MODEL = "bench-ttfc"
CHAT_PATH = "/v1/chat/completions"
PY_DRIVER_QUICK_MAX = 300  # --quick with the Python driver: at most this many requests per scenario

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an env proxy


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------
class Procs:
    """Every subprocess this script starts; each in its own session so a group kill reaches its workers."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], cpu: int | None, env: dict[str, str]) -> subprocess.Popen:
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        with open(self.logdir / f"{name}.log", "wb") as log:
            p = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        self.procs.append((name, p))
        return p

    def run(self, name: str, cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
        """Run a short-lived command (wrk) to completion; killed with the rest on interrupt."""
        p = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            text=True,
        )
        self.procs.append((name, p))
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(p, signal.SIGKILL)
            out, _ = p.communicate()
            self.procs.remove((name, p))
            raise BenchError(f"{name} did not finish in {timeout:.0f}s; output: {out[-500:]}") from None
        # on Ctrl-C/SIGTERM the process stays listed, so stop_all() ends it
        self.procs.remove((name, p))
        with open(self.logdir / f"{name}.log", "a") as log:
            log.write(f"$ {shlex.join(cmd)}\n{out}\n")
        if p.returncode != 0:
            raise BenchError(f"{name} exited {p.returncode}: {out[-800:]}")
        return out

    def log_tail(self, name: str, n: int = 1500) -> str:
        try:
            return (self.logdir / f"{name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @staticmethod
    def _kill(p: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, sig)  # the group is p's own session: p and its workers only

    def stop_all(self) -> None:
        live = [(n, p) for n, p in reversed(self.procs) if p.poll() is None]
        for _, p in live:
            self._kill(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(p, signal.SIGKILL)
                p.wait()
        # workers of a process that exited first: the group may outlive its leader
        for _, p in self.procs:
            self._kill(p, signal.SIGKILL)
        self.procs.clear()


def proc_tree(pid: int) -> list[int]:
    """pid and all its descendants (a multi-worker gateway forks)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_mib(pid: int) -> float | None:
    """VmRSS of pid plus all its descendants, in MiB."""
    total, seen = 0, False
    for p in proc_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    seen = True
        except OSError:
            continue
    return total / 1024 if seen else None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its descendants. CPU time per request barely moves when a noisy
    neighbour steals cycles, unlike req/s, so it is the steadier cost measure on a shared machine."""
    total = 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies over all CPUs from /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return vals[7] if len(vals) > 7 else 0, sum(vals)


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise BenchError("no free port")


# ---------------------------------------------------------------------------------------------------
# HTTP helpers (stdlib; used for readiness and validation only, never for measurements)
# ---------------------------------------------------------------------------------------------------
def chat_body(model: str, stream: bool, tag: str) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"bench {tag}"}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"},
    )
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_ready(name: str, proc: subprocess.Popen, url: str, procs: Procs, timeout: float) -> float:
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode} before it was ready:\n{procs.log_tail(name)}")
        try:
            status, _, _ = http("GET", url, timeout=2)
            if status == 200:
                return time.monotonic() - t0
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.05)
    raise BenchError(f"{name} not ready after {timeout:.0f}s ({url}: {last}):\n{procs.log_tail(name)}")


def parse_sse(raw: bytes) -> list[str]:
    return [line[5:].strip() for line in raw.decode(errors="replace").splitlines() if line.startswith("data:")]


def validate(base: str, chunks: int) -> list[str]:
    """One non-stream and one stream request; raises on a wrong answer, returns notes."""
    notes = []
    tag = f"validate-{time.time_ns()}"  # distinct prompts: a response cache must not answer these
    ns_body = chat_body(MODEL, False, tag + "-ns")
    status, headers, body = http("POST", base + CHAT_PATH, ns_body)
    if status != 200:
        raise BenchError(f"non-stream request: HTTP {status}: {body[:300]!r}")
    msg = json.loads(body)["choices"][0]["message"]["content"]
    if not msg:
        raise BenchError(f"non-stream request: empty content: {body[:300]!r}")
    cache = [{k.lower(): v for k, v in headers.items()}.get("x-cache")]
    if cache[0] is not None:  # a cache is on: does the same request again hit it?
        _, headers, _ = http("POST", base + CHAT_PATH, ns_body)
        cache.append({k.lower(): v for k, v in headers.items()}.get("x-cache"))
        notes.append(f"x-cache for the same request twice: {' then '.join(map(str, cache))}")
    status, headers, body = http("POST", base + CHAT_PATH, chat_body(MODEL, True, tag + "-st"))
    if status != 200:
        raise BenchError(f"stream request: HTTP {status}: {body[:300]!r}")
    events = parse_sse(body)
    if not events or events[-1] != "[DONE]":
        raise BenchError(f"stream request: no final [DONE]: {body[-300:]!r}")
    content = usage = 0
    for ev in events[:-1]:
        obj = json.loads(ev)
        if obj.get("usage"):
            usage += 1
        for ch in obj.get("choices") or []:
            if (ch.get("delta") or {}).get("content"):
                content += 1
    if content != chunks:
        raise BenchError(f"stream request: {content} content chunks, expected {chunks}")
    if not usage:
        notes.append("stream: no usage chunk although include_usage was asked for")
    status, _, body = http("POST", base + CHAT_PATH, chat_body(TTFC_MODEL, True, tag + "-ttfc"))
    if status != 200:
        raise BenchError(f"stream request for {TTFC_MODEL}: HTTP {status}: {body[:300]!r}")
    return notes


# ---------------------------------------------------------------------------------------------------
# load generators
# ---------------------------------------------------------------------------------------------------
_nonce_seq = iter(range(1, 1 << 62))


def nonce() -> str:
    """Unique per load run (and per benchmark run), so no two requests in a benchmark share a prompt:
    a response cache sees misses, as with real traffic, not the previous scenario's entries."""
    return f"r{os.getpid()}.{time.time_ns() % 10**9}.{next(_nonce_seq)}"


def pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    return sorted_vals[max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)]


def wrk_load(
    procs: Procs, url: str, conns: int, seconds: int, stream: bool, model: str, cpu: int | None, label: str
) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_post.lua"),
        url,
        "--",
        "stream" if stream else "nonstream",
        model,
        CLIENT_KEY,
        nonce(),
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = procs.run(f"wrk-{label}", cmd, timeout=seconds + 60)
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no BENCH_JSON line:\n{out[-800:]}")
    j = json.loads(m.group(1))
    errors = sum(j["errors"].values())
    lat = j["latency_us"]
    return {
        "rps": j["requests"] / (j["duration_us"] / 1e6),
        "requests": j["requests"],
        "errors": errors,
        "p50_ms": lat["p50"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "driver": "wrk",
    }


async def _py_load(
    url: str, conns: int, seconds: float, max_requests: int | None, stream: bool, model: str
) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    state = {"sent": 0, "errors": 0}
    run = nonce()
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns), timeout=timeout) as s:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(wid: int) -> None:
            i = 0
            while time.perf_counter() < deadline and (max_requests is None or state["sent"] < max_requests):
                state["sent"] += 1
                i += 1
                body = chat_body(model, stream, f"{run}-{wid}-{i}")
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    state["errors"] += 1

        await asyncio.gather(*(worker(w) for w in range(conns)))
        elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "rps": len(lat) / elapsed,
        "requests": len(lat),
        "errors": state["errors"],
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "driver": "python",
    }


async def _ttfc(url: str, n: int, warm: int) -> dict[str, Any]:
    """Sequential stream requests over one keep-alive connection: time to the first SSE data line."""
    import aiohttp

    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    ttfc: list[float] = []
    total: list[float] = []
    errors = 0
    run = nonce()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30)
    ) as s:
        for i in range(warm + n):
            body = chat_body(TTFC_MODEL, True, f"{run}-{i}")
            t0 = time.perf_counter()
            first = None
            seen = b""
            try:
                async with s.post(url, data=body, headers=headers) as r:
                    async for chunk in r.content.iter_any():
                        if first is None:
                            seen += chunk
                            if b"data:" in seen:
                                first = time.perf_counter()
                    ok = r.status == 200 and first is not None
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            end = time.perf_counter()
            if not ok:
                errors += 1
            elif i >= warm:
                ttfc.append(first - t0)
                total.append(end - t0)
    return {
        "ttfc_ms": statistics.median(ttfc) * 1000 if ttfc else math.nan,
        "ttfc_p90_ms": pct(sorted(ttfc), 90) * 1000,
        "total_ms": statistics.median(total) * 1000 if total else math.nan,
        "requests": len(ttfc),
        "errors": errors,
    }


def run_async(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    base: str = ""
    proc: subprocess.Popen | None = None  # the measured server process (None for direct)
    cpu_proc: subprocess.Popen | None = None  # whose CPU time is charged: proc, or the upstream for direct
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    rss_idle: float | None = None
    rss_after: float | None = None
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def alive(self) -> bool:
        if self.error:
            return False
        if self.proc is not None and self.proc.poll() is not None:
            self.error = f"process exited with {self.proc.returncode} during the run"
            return False
        return True


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
    p.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma list from " + ",".join(ALL_TARGETS))
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
    bad = [t for t in args.targets if t not in ALL_TARGETS]
    if bad:
        p.error(f"unknown target(s) {bad}; choose from {ALL_TARGETS}")
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

    targets = [Target(name) for name in args.targets]
    gw_version = ""
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
        return run_async(_py_load(url, conns, seconds, py_max, stream, MODEL))

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
            r = run_async(_ttfc(t.base + CHAT_PATH, args.ttfc_requests, 3 if args.quick else 10))
            t.results.setdefault("ttfc", []).append(r)
            print(
                f".. [{rep + 1}/{args.repeat}] ttfc    {t.name:14s} median {r['ttfc_ms']:7.2f} ms  "
                f"stream total {r['total_ms']:7.2f} ms  errors {r['errors']}",
                flush=True,
            )
    for t in targets:
        if t.alive() and t.proc is not None:
            t.rss_after = rss_mib(t.proc.pid)


# ---------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------
AGGREGATE = "median"  # set from --aggregate


def med(t: Target, key: str, metric: str) -> float | None:
    """The repeats of one metric folded into one number: their median, or with --aggregate best the
    best of them (highest req/s, lowest latency/CPU) -- the least disturbed run on a shared machine."""
    vals = [r[metric] for r in t.results.get(key, []) if metric in r and not math.isnan(r[metric])]
    if not vals:
        return None
    if AGGREGATE == "best":
        return max(vals) if metric == "rps" else min(vals)
    return statistics.median(vals)


def errs(t: Target, key: str) -> int:
    return sum(r["errors"] for r in t.results.get(key, []))


def fmt(v: float | None, nd: int = 0, suffix: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:,.{nd}f}{suffix}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def report(targets: list[Target], args, info: dict[str, str], pin_desc: str, driver: str, gw_version: str) -> str:
    by = {t.name: t for t in targets}
    direct, relay = by.get("direct"), by.get("relay")

    def v(t, key, metric):
        return med(t, key, metric) if t is not None else None

    lines = []
    lines.append(f"### llm-gateway benchmark — {dt.datetime.now().isoformat(timespec='seconds')}")
    lines.append("")
    lines.append(
        f"- machine: {info['nproc']} CPU ({info['cpu']}), {info['platform']}, load avg {info.get('loadavg')}, "
        f"CPU steal during the run {info.get('steal', '?')}"
    )
    lines.append(
        f"- python {info['python']}, aiohttp {info['aiohttp']}, uvloop {info['uvloop']}, "
        f"orjson {info['orjson']}" + (f", gateway {gw_version}" if gw_version else "")
    )
    drv = (
        f"wrk ({info.get('wrk')}, 1 thread, benchmarks/wrk_post.lua)"
        if driver == "wrk"
        else "Python aiohttp driver (wrk not installed or --driver python): client-bound, compare ratios only"
    )
    lines.append(f"- load generator: {drv}; TTFC: Python aiohttp client, 1 connection, sequential")
    lines.append(f"- {pin_desc}")
    lines.append(
        f"- {args.duration}s per scenario, warm-up {args.warmup}s, repeat {args.repeat} ({args.aggregate}), "
        f"{args.chunks} chunks per stream, TTFC over {args.ttfc_requests} requests "
        f"(upstream holds {args.ttfc_hold_ms:g} ms after chunk 1)" + (" — QUICK mode" if args.quick else "")
    )
    lines.append("")
    c64, st = f"ns c{args.conns_high}", f"st c{args.conns_stream}"
    head = [
        "target",
        "ns c1 req/s",
        "ns c1 p50 ms",
        "ns c1 p99 ms",
        "+p50 vs direct µs",
        f"{c64} req/s",
        "xdirect",
        "xrelay",
        "CPU µs/req",
        f"{st} req/s",
        "xdirect",
        "xrelay",
        "CPU µs/stream",
        "TTFC p50 ms",
        "stream p50 ms",
        "RSS idle MiB",
        "RSS after MiB",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    d_p50 = v(direct, "ns_c1", "p50_ms")
    for t in targets:
        if t.error and not t.results:
            lines.append(f"| {t.name} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
            continue
        p50 = med(t, "ns_c1", "p50_ms")
        added = (p50 - d_p50) * 1000 if p50 is not None and d_p50 is not None else None
        flag = {k: (" ⚠" if errs(t, k) else "") for k in ("ns_c1", "ns_c64", "st_c16", "ttfc")}
        row = [
            t.name,
            fmt(med(t, "ns_c1", "rps")) + flag["ns_c1"],
            fmt(p50, 2),
            fmt(med(t, "ns_c1", "p99_ms"), 2),
            fmt(added) if t.name != "direct" else "0",
            fmt(med(t, "ns_c64", "rps")) + flag["ns_c64"],
            ratio(med(t, "ns_c64", "rps"), v(direct, "ns_c64", "rps")),
            ratio(med(t, "ns_c64", "rps"), v(relay, "ns_c64", "rps")),
            fmt(med(t, "ns_c64", "cpu_us_per_req")),
            fmt(med(t, "st_c16", "rps")) + flag["st_c16"],
            ratio(med(t, "st_c16", "rps"), v(direct, "st_c16", "rps")),
            ratio(med(t, "st_c16", "rps"), v(relay, "st_c16", "rps")),
            fmt(med(t, "st_c16", "cpu_us_per_req")),
            fmt(med(t, "ttfc", "ttfc_ms"), 2) + flag["ttfc"],
            fmt(med(t, "ttfc", "total_ms"), 2),
            fmt(t.rss_idle, 1),
            fmt(t.rss_after, 1),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    # summary sentences against the floor
    r_p50 = v(relay, "ns_c1", "p50_ms")
    relay_added = (r_p50 - d_p50) * 1000 if r_p50 is not None and d_p50 is not None else None
    for t in targets:
        if not t.name.startswith("gateway") or not t.results:
            continue
        p50 = med(t, "ns_c1", "p50_ms")
        added = (p50 - d_p50) * 1000 if p50 is not None and d_p50 is not None else None
        parts = [
            f"req/s {c64} {ratio(med(t, 'ns_c64', 'rps'), v(relay, 'ns_c64', 'rps'))} relay, "
            f"{st} {ratio(med(t, 'st_c16', 'rps'), v(relay, 'st_c16', 'rps'))} relay",
            "CPU per request "
            f"{ratio(med(t, 'ns_c64', 'cpu_us_per_req'), v(relay, 'ns_c64', 'cpu_us_per_req'))} relay's, "
            f"per stream {ratio(med(t, 'st_c16', 'cpu_us_per_req'), v(relay, 'st_c16', 'cpu_us_per_req'))}",
        ]
        if added is not None and relay_added is not None:
            parts.append(
                f"added p50 latency over direct {added:.0f} µs vs relay's {relay_added:.0f} µs "
                f"({ratio(added, relay_added)})"
            )
        tt, rt = med(t, "ttfc", "ttfc_ms"), v(relay, "ttfc", "ttfc_ms")
        if tt is not None and rt is not None:
            parts.append(f"TTFC {tt - rt:+.2f} ms vs relay")
        lines.append(f"- **{t.name}**: " + "; ".join(parts))
    if relay_added is not None:
        lines.append(f"- relay adds {relay_added:.0f} µs p50 over direct at 1 connection")
    for t in targets:
        if t.error:
            why = " / ".join(x.strip() for x in t.error.splitlines() if x.strip())
            lines.append(f"- **{t.name} FAILED**: {why[:600]}")
        for k in ("ns_c1", "ns_c64", "st_c16", "ttfc"):
            if errs(t, k):
                lines.append(f"- ⚠ {t.name} {k}: {errs(t, k)} failed requests (non-2xx, socket errors, timeouts)")
        lines += [f"- **{t.name}** {n}" for n in t.notes if n.startswith("⚠")]
        plain = [n for n in t.notes if not n.startswith("⚠")]
        if plain:
            lines.append(f"- {t.name}: " + "; ".join(plain))
    lines.append(
        "- columns: req/s higher is better; xdirect/xrelay = this target's req/s over theirs; "
        "`+p50 vs direct` = latency this hop adds at 1 connection; CPU = user+sys time of the relay/gateway "
        "process (the upstream's for direct) per request, steadier than req/s on a shared machine; "
        "RSS = VmRSS incl. children"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global AGGREGATE
    AGGREGATE = args.aggregate

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
