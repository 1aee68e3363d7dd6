#!/usr/bin/env python3
"""The full plugin chain on both rate-limit backends, side by side with the bare relay, in one run.

    python benchmarks/chain.py                      # 10 turns of 2 s per target, c=1
    python benchmarks/chain.py --rounds 4 --seconds 1

Targets, all pinned to one CPU (upstream, wrk and Redis on the other, as a Redis on its own host
would be): the bare relay, the gateway with nothing configured, and the full chain twice --
client-key auth with 10,000 keys, requests and tokens limits at all three levels (global,
provider, every key; far above the load, so every request is checked and charged but none is
refused), budgets (every key's and its team's: each request priced, reserved, settled and its
spend record written behind to SQLite, none refused), the response cache (every body unique:
lookup, miss, store) and metrics -- once with ``rate_limit.backend: memory`` and once with
``backend: redis`` (which alone has a ``redis:`` section, so its budget counters are in Redis).

The 10,000 keys are governance's virtual keys (``sk-bench-client`` among them), seeded into the
run's SQLite store before the gateway starts; there are no static keys: with an ``admin``
section the virtual keys are the client keys, so they are the issue's 10,000. Latency takes turns target by target
(``ab.py --scenario latency``): p50 at one connection, added over the direct call.

Then it counts what each request sends to Redis, with ``MONITOR`` over sequential requests: the
rate limits' admission script (EVALSHA of ``ADMIT``) and the budgets' reservation (EVALSHA
``BUDGET``) before the response; the token settlements follow off the request path (pipelined
EVALSHAs of ``SETTLE``, and one EVAL per request correcting its budget counters).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from ab import LOAD_CPU, SERVER_CPU, take_turns
from bench_common import (
    CHAT_PATH,
    CLIENT_KEY,
    GATEWAY_CONFIGS,
    HERE,
    MODEL,
    TTFC_MODEL,
    BenchError,
    Procs,
    chat_body,
    free_port,
    http,
    start_upstream,
    wait_ready,
)
from governance import seed_store

from plugins.governance.budgets import RESERVE
from plugins.ratelimit_gcra import ADMIT_SHA, SETTLE_SHA

KEYS = 10_000
HIGH = {"requests_per_minute": 100_000_000, "tokens_per_minute": 100_000_000_000}
# Budgets in USD far above what any run spends (a request of the bench model costs about $0.0001),
# so every request is priced, reserved and settled against its key's and its team's, and none is refused.
KEY_BUDGET, TEAM_BUDGET = 1e9, 1e12
BENCH_PRICE = {"input": 0.15, "output": 0.6}  # USD per million tokens


def chain_config(backend: str, redis_port: int, workdir: Path | None = None) -> dict:
    """The full chain's gateway.yaml as a dict; seeds its governance store in ``workdir`` (a new
    temporary directory, kept, when none is given) first."""
    base = yaml.safe_load(GATEWAY_CONFIGS["gateway-chain"].read_text())
    workdir = workdir or Path(tempfile.mkdtemp(prefix="llm-gateway-chain-store-"))
    base.update(budgets_config(workdir / f"governance-{backend}.db"))
    base["rate_limit"] = {**HIGH, "backend": backend}
    if backend == "redis":  # else the budget counters would be in Redis too (docs/governance.md)
        base["redis"] = {"url": f"redis://127.0.0.1:{redis_port}/0"}
        base["cache"] = {**base["cache"], "backend": "redis"}  # issue 20: "the Redis backend for limits and cache"
    return base


def chain_file(procs: Procs, backend: str, *, slow_start: bool = False, redis_port: int | None = None) -> Path:
    """The full chain as a config file in ``procs``' directory, its store seeded beside it (and a
    redis-server started for ``redis``, on ``redis_port`` if given). ``slow_start``: under
    valgrind, loading 10,000 keys takes longer than the store's first load allows at the default
    poll interval (4 polls)."""
    config = chain_config(backend, start_redis(procs, redis_port) if backend == "redis" else 0, procs.logdir)
    if slow_start:
        config["store"]["poll_interval_s"] = 1
    path = procs.logdir / f"chain-{backend}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def budgets_config(store: Path) -> dict:
    """Governance for the chain: 10,000 virtual keys (the client's among them) seeded into an SQLite
    store, each with a per-key rate limit and a daily budget, all in a team with a monthly budget,
    and a price for every bench model. They replace gateway-chain's static keys: with an ``admin``
    section the virtual keys are the client keys, and 10,000 of them are the chain's 10,000."""
    secrets = [CLIENT_KEY] + [f"sk-bench-{i:05d}-{'x' * 16}" for i in range(1, KEYS)]
    for stale in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
        stale.unlink(missing_ok=True)
    url = f"sqlite:///{store}"
    seeding = seed_store(url, secrets, KEY_BUDGET, TEAM_BUDGET, rate_limit=HIGH)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(seeding)
    else:  # called from a coroutine (an in-process measurement): seed on a loop of its own
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, seeding).result()
    return {"auth": {"keys": []}, "admin": {"keys": ["sk-bench-admin"]}, "store": {"url": url},
            "pricing": {f"up/{model}": dict(BENCH_PRICE) for model in (MODEL, TTFC_MODEL)}}


def start_redis(procs: Procs, port: int | None = None) -> int:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port(18990)
    procs.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                LOAD_CPU, {})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return port
        except OSError:
            time.sleep(0.05)
    raise BenchError("redis-server did not start")


def monitor(port: int, seen: list[bytes], stop: threading.Event) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"MONITOR\r\n")
        s.settimeout(0.2)
        buf = b""
        while not stop.is_set():
            try:
                buf += s.recv(65536)
            except TimeoutError:
                continue
            *lines, buf = buf.split(b"\r\n")
            seen += [ln for ln in lines if ln.startswith(b"+") and b'"' in ln]


def count_round_trips(port: int, redis_port: int, n: int) -> None:
    admit, settle = ADMIT_SHA, SETTLE_SHA
    budget = hashlib.sha1(RESERVE.encode()).hexdigest()  # the budget script's name, as redis-py registers it
    seen: list[bytes] = []
    stop = threading.Event()
    watcher = threading.Thread(target=monitor, args=(redis_port, seen, stop))
    watcher.start()
    time.sleep(0.3)
    for i in range(n):
        status, _, _ = http("POST", f"http://127.0.0.1:{port}{CHAT_PATH}", chat_body(MODEL, False, f"rt{i}"))
        if status != 200:
            raise BenchError(f"chain-redis answered {status}")
    time.sleep(0.5)  # the last settlements
    stop.set()
    watcher.join()
    kinds: dict[str, int] = {}
    for line in seen:
        words = line.split(b'"')[1::2]
        name = words[0].decode().upper()
        if name == "EVALSHA":
            name += {admit: " ADMIT", settle: " SETTLE", budget: " BUDGET"}.get(words[1].decode(), " ?")
        kinds[name] = kinds.get(name, 0) + 1
    print(f"\nRedis commands for {n} sequential requests through chain-redis (MONITOR; commands run inside a "
          "script are shown but are not round trips):\n")
    print("| command | count | per request |")
    print("|---|---:|---:|")
    for name, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {count} | {count / n:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--count", type=int, default=200, help="requests whose Redis commands are counted")
    args = p.parse_args(argv)
    if not shutil.which("wrk") or not shutil.which("taskset"):
        print("chain.py needs wrk and taskset", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="llm-gateway-chain-"))
    procs = Procs(tmp)
    try:
        redis_port = start_redis(procs)
        up_port, env = start_upstream(procs, LOAD_CPU, "--chunks", "50")
        targets: list[tuple[str, int, subprocess.Popen | None]] = [("direct", up_port, None)]
        relay_port = free_port(18901)
        relay = procs.start("relay", [sys.executable, str(HERE / "relay.py"), "--port", str(relay_port),
                                      "--upstream", f"http://127.0.0.1:{up_port}"], SERVER_CPU, env)
        targets.append(("relay", relay_port, relay))
        configs = {"gateway": GATEWAY_CONFIGS["gateway"]}
        for backend in ("memory", "redis"):
            path = tmp / f"chain-{backend}.yaml"
            path.write_text(yaml.safe_dump(chain_config(backend, redis_port, tmp)))
            configs[f"chain-{backend}"] = path
        port = relay_port
        for name, config in configs.items():
            port = free_port(port + 1)
            proc = procs.start(name, [sys.executable, "-m", "gateway", "serve", "--config", str(config),
                                      "--host", "127.0.0.1", "--port", str(port)], SERVER_CPU, env)
            targets.append((name, port, proc))
        for name, port, proc in targets[1:]:
            assert proc is not None
            wait_ready(name, proc, f"http://127.0.0.1:{port}/health", procs, 90)
        print(f".. {len(targets) - 1} servers ready; {KEYS} client keys in each chain config", flush=True)
        take_turns(targets, argparse.Namespace(rounds=args.rounds, seconds=args.seconds))
        count_round_trips(targets[-1][1], redis_port, args.count)
    except BenchError as exc:
        print(f"chain.py: {exc}", file=sys.stderr)
        for name, proc in procs.procs:
            if proc.poll() is not None:
                print(f"chain.py: {name} exited {proc.returncode}:\n{procs.log_tail(name)}", file=sys.stderr)
        print(f"chain.py: logs kept in {tmp}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
