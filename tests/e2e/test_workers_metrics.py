"""--workers N: every scrape of /metrics reports the sum over all workers, and a worker killed and
replaced does not make a counter go down."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from plugins.metrics_shared import FLUSH_INTERVAL_S
from tests.e2e.test_workers import running, workers_of
from tests.support import free_port, wait_healthy

WORKERS = 3
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "count me"}]}


async def scrape_requests(url: str) -> float:
    """``llm_gateway_requests_total`` summed over its series, on a new connection (so successive
    scrapes land on different workers)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http, \
            http.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "llm_gateway_requests_total")


async def send(url: str, n: int, concurrency: int = 24) -> None:
    """``n`` chat requests over ``concurrency`` keep-alive connections (spread over the workers by
    the kernel's SO_REUSEPORT hashing of each connection)."""
    left = iter(range(n))

    async def one_connection(http: aiohttp.ClientSession) -> None:
        for _ in left:
            async with http.post(url + "/v1/chat/completions", json=BODY) as resp:
                assert resp.status == 200
                await resp.read()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(one_connection(http) for _ in range(concurrency)))


async def consecutive_scrapes(url: str, times: int = 10) -> list[float]:
    """``times`` scrapes in a row, after the staleness bound (every worker writes its counts to the
    shared files every FLUSH_INTERVAL_S; waited four times over for a loaded machine). No polling:
    the first scrape, whichever worker answers it, must already count every worker's requests."""
    await asyncio.sleep(4 * FLUSH_INTERVAL_S)
    return [await scrape_requests(url) for _ in range(times)]


async def new_workers(pid: int, old: set[int], timeout_s: float = 30) -> set[int]:
    for _ in range(int(timeout_s / 0.05)):
        now = set(workers_of(pid))
        if len(now) == WORKERS and now != old:
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"the supervisor did not replace the worker: {workers_of(pid)}")


async def test_scrapes_sum_all_workers_and_never_go_down_when_one_is_replaced(tmp_path: Path) -> None:
    port = free_port()
    config: dict[str, Any] = {"server": {"port": port, "drain_timeout_s": 5},
                              "providers": [{"name": "mock", "type": "mock", "models": ["mock-1"],
                                             "health_check": {"enabled": False}}]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left over from an earlier run")  # wiped at start
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path), "--workers", str(WORKERS),
        stderr=asyncio.subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        first = await new_workers(proc.pid, set())
        await send(url, 3000)
        assert await consecutive_scrapes(url) == [3000] * 10

        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        second = await new_workers(proc.pid, first)
        assert victim not in second
        await wait_healthy(url, proc)
        assert await consecutive_scrapes(url, times=5) == [3000] * 5  # the dead worker's counts stay
        await send(url, 300)
        assert await consecutive_scrapes(url) == [3300] * 10

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert not any(running(w) for w in second)
        # Files: at most one per worker ever started and metric type (counter, histogram, gauge).
        assert len(list(shared.glob("*.db"))) <= (WORKERS + 1) * 3
        assert not (shared / "counter_1.db").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
