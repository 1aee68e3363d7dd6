"""A request's cost on /metrics (by provider and model), in the access log and on its span; a
model without a price is counted, with a null cost."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from plugins.tracing import TRACING
from tests.conftest import StartGateway
from tests.governance.conftest import admin_call, completion, flushed, governance_config
from tests.telemetry.test_traces import Receiver, attrs, receiver  # noqa: F401 - the receiver fixture

COST = 3 * 1000 / 1e6 + 5 * 2000 / 1e6  # "hello there friend": 3 prompt tokens, 5 answer words


async def test_cost_reaches_metrics_the_access_log_and_the_span(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        receiver: tuple[Receiver, str]) -> None:  # noqa: F811
    rec, endpoint = receiver
    gw = await gateway(governance_config(tmp_path / "gw.db", access_log={"enabled": True},
                                         telemetry={"endpoint": endpoint, "schedule_delay_ms": 50}))
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "k"})
    caplog.set_level(logging.INFO, logger="llm_gateway.access")
    status, body, _ = await completion(http, gw, key["key"])
    assert status == 200 and body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 5
    async with http.post(gw.v1 + "/embeddings", json={"model": "mock-embed", "input": "unpriced words"},
                         headers={"Authorization": f"Bearer {key['key']}"}) as resp:
        assert resp.status == 200
    await flushed(gw)
    async with http.get(gw.url + "/metrics") as resp:
        metrics = await resp.text()
    series = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    assert float(series['llm_gateway_cost_usd_total{model="mock-1",provider="mock"}']) == pytest.approx(COST)
    assert 'llm_gateway_unpriced_requests_total{model="mock-embed",provider="mock"} 1.0' in metrics
    assert "llm_gateway_spend_records_written_total 2.0" in metrics
    assert "llm_gateway_governance_store_up 1.0" in metrics
    lines = [r.getMessage() for r in caplog.records if r.name == "llm_gateway.access"]
    assert any("cost_usd=0.013" in line and "model=mock-1" in line for line in lines), lines
    assert any("cost_usd=-" in line and "model=mock-embed" in line for line in lines), lines
    await asyncio.to_thread(gw.app[TRACING].force_flush)
    costs = [attrs(s).get("llm_gateway.cost_usd") for _, s in rec.spans if s.kind == s.SPAN_KIND_SERVER]
    assert pytest.approx(COST) in costs
    _, spend = await admin_call(http, gw, "GET", "/admin/spend?group_by=model")
    assert {r["group"]: r["cost_usd"] for r in spend["data"]} == {"mock-1": pytest.approx(COST), "mock-embed": 0.0}
