"""The dashboard's endpoints over real loopback HTTP: 404 without admin keys, 401 without an admin
key, zeros when idle, and the numbers of real traffic (with an upstream that refuses, secrets masked)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import MOCK_PROVIDER, StartGateway, make_config
from tests.governance.conftest import ADMIN, chat, completion, governance_config
from tests.support import free_port, openai_provider

VENDOR_KEY = "sk-live-" + "Q9vT" * 8


async def test_without_an_admin_section_there_is_no_dashboard(gateway: StartGateway,
                                                              http: aiohttp.ClientSession) -> None:
    gw = await gateway(make_config())
    for path in ("/ui", "/ui/dashboard.js", "/admin/dashboard"):
        async with http.get(gw.url + path, headers=ADMIN) as resp:
            assert resp.status == 404, path
            assert (await resp.json())["error"]["code"] == "unknown_endpoint"


async def test_the_page_is_served_to_anyone_the_data_only_with_an_admin_key(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    async with http.get(gw.url + "/ui") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert 'id="admin-key"' in await resp.text()
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        async with http.get(f"{gw.url}/ui/{name}") as resp:
            assert resp.status == 200 and resp.content_type == kind
    async with http.get(gw.url + "/ui/../gateway.yaml") as resp:
        assert resp.status == 404
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with http.get(gw.url + "/admin/dashboard", headers=headers) as resp:
            assert resp.status == 401
    async with http.get(gw.url + "/admin/dashboard", headers=ADMIN) as resp:
        idle = await resp.json()
    assert idle["totals"]["requests"] == 0 and set(idle["requests_per_s"]) == {0}
    assert [p["name"] for p in idle["providers"]] == ["mock"]
    assert idle["providers"][0]["latency_p50_ms"] is None and idle["providers"][0]["circuit"] == "closed"


async def test_traffic_moves_the_numbers_and_the_last_error_is_masked(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    down = openai_provider(f"http://127.0.0.1:{free_port()}", name="down", api_key=VENDOR_KEY,
                           models=["down-1"], )
    gw = await gateway(governance_config(tmp_path / "gw.db", MOCK_PROVIDER, down))
    async with http.post(gw.url + "/admin/keys", json={"name": "t"}, headers=ADMIN) as resp:
        key = (await resp.json())["key"]
    for _ in range(3):
        assert (await completion(http, gw, key))[0] == 200
    async with http.post(gw.v1 + "/chat/completions", json={**chat(), "stream": True},
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200
        await resp.read()
    status, body, _ = await completion(http, gw, key, {**chat(), "model": "down-1"})
    assert status >= 500, body
    async with http.get(gw.url + "/admin/dashboard", headers=ADMIN) as resp:
        view = await resp.json()
    assert view["totals"]["requests"] == 5 and view["totals"]["errors"] == 1
    assert view["requests_per_s"][-1] + view["requests_per_s"][-2] == 5
    assert sum(view["tokens_per_min"]) > 0 and sum(view["spend_per_min"]) > 0
    by_name = {p["name"]: p for p in view["providers"]}
    mock, broken = by_name["mock"], by_name["down"]
    assert mock["requests"] == 4 and mock["errors"] == 0 and mock["latency_p95_ms"] is not None
    assert mock["ttft_p50_ms"] is not None and mock["streams_in_flight"] == 0
    assert broken["errors"] == 1 and broken["error_rate"] == 1.0 and broken["last_error"]
    assert VENDOR_KEY not in str(view)
