"""Bounded soak: N mixed requests through a gateway subprocess against the OpenAI emulator,
reporting the gateway's RSS and open file descriptors at start and end (both must stay flat).

    python benchmarks/soak.py --requests 50000 --concurrency 32

Mix: non-stream chat, streams (some with usage), embeddings, unknown models, invalid JSON,
upstream 500s (retried), streams dropped mid-way by the upstream, and clients that disconnect
mid-stream. Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.emulators import openai as openai_emulator
from tests.emulators.base import EmulatorState, Fault

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "soak test message here"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> tuple[float, int]:
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def one(session: aiohttp.ClientSession, url: str, kind: int, state: EmulatorState) -> str:
    v1 = url + "/v1"
    if kind == 0:
        async with session.post(v1 + "/chat/completions", json=CHAT) as r:
            await r.read()
            return str(r.status)
    if kind in (1, 2):
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": kind == 2}}
        async with session.post(v1 + "/chat/completions", json=body) as r:
            await r.read()
            return f"stream-{r.status}"
    if kind == 3:
        async with session.post(v1 + "/embeddings", json={"model": "text-embedding-3-small", "input": "x y"}) as r:
            await r.read()
            return str(r.status)
    if kind == 4:
        async with session.post(v1 + "/chat/completions", json={**CHAT, "model": "nope"}) as r:
            await r.read()
            return str(r.status)
    if kind == 5:
        async with session.post(v1 + "/chat/completions", data=b"{broken") as r:
            await r.read()
            return str(r.status)
    if kind == 6:
        state.script(Fault.status(500, "soak"))
        async with session.post(v1 + "/chat/completions", json=CHAT) as r:
            await r.read()
            return f"retried-{r.status}"
    if kind == 7:
        state.script(Fault.drop_mid_stream(after=2))
        async with session.post(v1 + "/chat/completions", json={**CHAT, "stream": True}) as r:
            await r.read()
            return "dropped"
    # kind 8: the client leaves mid-stream
    r = await session.post(v1 + "/chat/completions", json={**CHAT, "stream": True})
    await r.content.readuntil(b"\n\n")
    r.close()
    return "client-left"


async def main(total: int, concurrency: int) -> None:
    state = EmulatorState(chunk_delay=0.0)
    emulator = TestServer(openai_emulator.create_app(state), host="127.0.0.1")
    await emulator.start_server(shutdown_timeout=0.2)
    port = free_port()
    config = {
        "server": {"port": port},
        "providers": [{"name": "oai", "type": "openai", "base_url": f"http://127.0.0.1:{emulator.port}/v1",
                       "api_key": "test-key", "models": ["gpt-4o-mini", "text-embedding-3-small"],
                       "retry": {"attempts": 1, "backoff_base_s": 0.001}, "health_check": {"enabled": False},
                       "circuit_breaker": {"enabled": False}}],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "serve", "--config", f.name)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            for _ in range(200):
                try:
                    async with session.get(url + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            kinds = itertools.cycle([0, 1, 0, 2, 3, 0, 1, 4, 0, 5, 1, 6, 0, 7, 2, 8])
            counts: dict[str, int] = {}

            async def worker(n: int) -> None:
                for _ in range(n):
                    outcome = await one(session, url, next(kinds), state)
                    counts[outcome] = counts.get(outcome, 0) + 1

            warm = min(2000, total // 10)
            await asyncio.gather(*(worker(warm // concurrency) for _ in range(concurrency)))
            start_rss, start_fds = proc_stats(proc.pid)
            started = time.perf_counter()
            samples = []
            rest = total - warm
            per = rest // concurrency
            tasks = [asyncio.create_task(worker(per)) for _ in range(concurrency)]
            while not all(t.done() for t in tasks):
                await asyncio.sleep(2)
                samples.append(proc_stats(proc.pid))
            await asyncio.gather(*tasks)
            await asyncio.sleep(0.5)
            end_rss, end_fds = proc_stats(proc.pid)
            took = time.perf_counter() - started
        print(f"requests: {warm + per * concurrency} ({warm} warm-up) in {took:.1f}s, "
              f"{per * concurrency / took:.0f} req/s, concurrency {concurrency}")
        print("outcomes:", dict(sorted(counts.items())))
        print(f"RSS MB:   start {start_rss:.1f}  end {end_rss:.1f}  max {max(s[0] for s in samples):.1f}"
              f"  ({(end_rss / start_rss - 1) * 100:+.1f}%)")
        print(f"open FDs: start {start_fds}  end {end_fds}  max {max(s[1] for s in samples)}")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 40)
        os.unlink(f.name)
        await emulator.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
