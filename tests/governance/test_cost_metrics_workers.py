"""`serve --workers 2`: llm_gateway_cost_usd and llm_gateway_unpriced_requests on /metrics are the
sums over both workers, whichever worker answers the scrape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plugins.metrics_shared import FLUSH_INTERVAL_S
from tests.conftest import make_config
from tests.e2e.test_reload_cli import Server
from tests.e2e.test_workers_metrics import BODY, send
from tests.governance.conftest import PRICING

REQUESTS = 400


async def scrape(url: str) -> dict[str, float]:
    """Each series' summed value, on a new connection (so scrapes land on either worker)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http, \
            http.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    families = [f.name for f in text_string_to_metric_families(text)]
    assert families.count("llm_gateway_cost_usd") == 1, families
    return {s.name + str(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def embed(url: str, n: int) -> None:
    for _ in range(n):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http, \
                http.post(url + "/v1/embeddings", json={"model": "mock-embed", "input": "no price"}) as resp:
            assert resp.status == 200
            await resp.read()


async def test_cost_counters_sum_over_both_workers(tmp_path: Path) -> None:
    server = Server(tmp_path, make_config(pricing=PRICING, store={"url": f"sqlite:///{tmp_path}/gw.db",
                                                                   "flush_interval_s": 0.2}))
    url = server.url
    try:
        await server.start("--workers", "2")
        async with aiohttp.ClientSession() as http, http.post(url + "/v1/chat/completions", json=BODY) as resp:
            usage = (await resp.json())["usage"]  # every request of BODY costs the same
        cost = (usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 2000) / 1e6
        await send(url, REQUESTS - 1, concurrency=16)  # many connections: both workers serve some
        await embed(url, 20)
        await asyncio.sleep(4 * FLUSH_INTERVAL_S)  # every worker has written its sums
        cost_key = "llm_gateway_cost_usd_total[('model', 'mock-1'), ('provider', 'mock')]"
        unpriced_key = "llm_gateway_unpriced_requests_total[('model', 'mock-embed'), ('provider', 'mock')]"
        for _ in range(8):  # whichever worker answers, the totals are every worker's
            series = await scrape(url)
            assert series[cost_key] == pytest.approx(REQUESTS * cost)
            assert series[unpriced_key] == 20
            assert series["llm_gateway_requests_total[('model', 'mock-1'), ('operation', 'chat'), "
                          "('provider', 'mock'), ('status', '200')]"] == REQUESTS
    finally:
        await server.stop()
    assert server.proc is not None and server.proc.returncode == 0
