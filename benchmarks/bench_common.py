"""Shared pieces of the benchmark: constants, process handling and the stdlib HTTP helpers used for
readiness and validation (never for measurements)."""


from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ALL_TARGETS = ("direct", "relay", "gateway", "gateway-chain")
GATEWAY_CONFIGS = {"gateway": HERE / "gateway.bench.yaml", "gateway-chain": HERE / "gateway.bench-chain.yaml"}
DEFAULT_PORTS = {"upstream": 18900, "relay": 18901, "gateway": 18902, "gateway-chain": 18903,
                 "gateway-chain-10k": 18904, "gateway-chain-redis": 18905}
# The full chain of chain.py (10,000 client keys, limits at three levels, cache, metrics) on the memory
# and the Redis rate-limit backends; configs generated at run time, so not in the default run.
CHAIN_TARGETS = ("gateway-chain-10k", "gateway-chain-redis")
CLIENT_KEY = "sk-bench-client"  # the chain config's client key; the other targets accept any key
MODEL = "bench-model"
TTFC_MODEL = "bench-ttfc"
CHAT_PATH = "/v1/chat/completions"
PY_DRIVER_QUICK_MAX = 300  # --quick with the Python driver: at most this many requests per scenario

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an env proxy



class BenchError(Exception):
    """A benchmark step failed (a target did not start, answered wrongly, ...)."""


class Procs:
    """Every subprocess this script starts; each in its own session so a group kill reaches its workers."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(
        self, name: str, cmd: list[str], cpu: int | None, env: dict[str, str], cwd: Path = ROOT
    ) -> subprocess.Popen:
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        with open(self.logdir / f"{name}.log", "wb") as log:
            p = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
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


def checkouts(paths: list[Path]) -> list[Path]:
    """The trees a comparison tool was given, resolved; BenchError when one is not a checkout of
    this repository (its gateway runs with that tree on PYTHONPATH)."""
    trees = [p.resolve() for p in paths]
    for tree in trees:
        if not (tree / "gateway" / "__init__.py").is_file():
            raise BenchError(f"{tree}: not a checkout of this repository")
    return trees


def start_upstream(procs: Procs, cpu: int | None, *extra: str, port: int | None = None) -> tuple[int, dict[str, str]]:
    """The mock upstream (``upstream.py`` with ``extra`` arguments), ready; its port (``port``, or
    the usual one when free), and the environment the targets started after it should get
    (gateway configs read its port from it)."""
    port = port or free_port(DEFAULT_PORTS["upstream"])
    env = {**os.environ, "BENCH_UPSTREAM_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(HERE / "upstream.py"), "--port", str(port), *extra]
    upstream = procs.start("upstream", cmd, cpu, env)
    wait_ready("upstream", upstream, f"http://127.0.0.1:{port}/health", procs, 30)
    return port, env


def start_relay_and_checkouts(
    procs: Procs,
    trees: list[Path],
    config: Path,
    up_port: int,
    env: dict[str, str],
    cpu: int,
    env_for: Callable[[str, Path | None], dict[str, str]] = lambda name, tree: {},
) -> list[tuple[str, int, subprocess.Popen]]:
    """The bare relay and a gateway per checkout (that tree on PYTHONPATH), pinned to ``cpu``,
    ready: ``(name, port, process)`` each, the relay first. ``env_for(name, tree)`` adds
    environment to one target (``tree`` None for the relay); a PYTHONPATH it gives is appended to
    the tree's."""
    py = sys.executable
    port = free_port(DEFAULT_PORTS["relay"])
    extra = env_for("relay", None)
    relay = procs.start(
        "relay",
        [py, str(HERE / "relay.py"), "--port", str(port), "--upstream", f"http://127.0.0.1:{up_port}"],
        cpu,
        {**env, **extra},
    )
    targets = [("relay", port, relay)]
    for i, tree in enumerate(trees):
        port = free_port(port + 1)
        name = f"{i}:{tree}"
        extra = env_for(name, tree)
        path = os.pathsep.join(filter(None, [str(tree), extra.pop("PYTHONPATH", "")]))
        gw = procs.start(
            f"gateway-{i}",
            [py, "-m", "gateway", "serve", "--config", str(config.resolve()), "--port", str(port)],
            cpu,
            {**env, **extra, "PYTHONPATH": path},
            cwd=tree,
        )
        targets.append((name, port, gw))
    for name, port, p in targets:
        wait_ready(name, p, f"http://127.0.0.1:{port}/health", procs, 60)
    return targets


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
    aggregate: str = "median"  # how repeats fold into one figure: median or best

    def alive(self) -> bool:
        if self.error:
            return False
        if self.proc is not None and self.proc.poll() is not None:
            self.error = f"process exited with {self.proc.returncode} during the run"
            return False
        return True


