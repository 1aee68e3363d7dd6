"""End to end over HTTP: spend priced from the mock provider's real token counts, visible in
/admin/spend and in the store; budgets refusing with budget_exceeded; revocation reaching another
gateway on the same store within a second; budgets shared through Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from plugins.governance import GOVERNANCE
from tests.conftest import MOCK_PROVIDER, StartGateway
from tests.governance.conftest import admin_call, chat, completion, flushed, governance_config
from tests.services import RedisServer
from tests.support import read_events

PER_TOKEN_IN, PER_TOKEN_OUT = 1000 / 1e6, 2000 / 1e6


async def test_a_key_spends_its_budget_and_then_gets_budget_exceeded(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    db = tmp_path / "gw.db"
    gw = await gateway(governance_config(db))
    _, team = await admin_call(http, gw, "POST", "/admin/teams", {"name": "lab"})
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {
        "name": "small", "team": team["id"], "budget_usd": 0.05, "budget_period": "day"})
    spent, served, usage_total = 0.0, 0, [0, 0]
    while True:
        status, body, headers = await completion(http, gw, key["key"])
        if status != 200:
            break
        served += 1
        usage = body["usage"]
        usage_total[0] += usage["prompt_tokens"]
        usage_total[1] += usage["completion_tokens"]
        spent += usage["prompt_tokens"] * PER_TOKEN_IN + usage["completion_tokens"] * PER_TOKEN_OUT
        assert served < 20
    assert status == 429
    assert body["error"]["type"] == "insufficient_quota" and body["error"]["code"] == "budget_exceeded"
    assert 0 < int(headers["Retry-After"]) <= 86400
    assert served >= 2 and spent <= 0.05
    await flushed(gw)
    _, by_key = await admin_call(http, gw, "GET", "/admin/spend?group_by=key")
    assert by_key["data"] == [{"group": key["id"], "requests": served, "input_tokens": usage_total[0],
                               "output_tokens": usage_total[1], "cached_input_tokens": 0,
                               "cost_usd": pytest.approx(spent)}]
    for group_by, group in (("team", team["id"]), ("model", "mock-1"), ("provider", "mock")):
        _, rows = await admin_call(http, gw, "GET", f"/admin/spend?group_by={group_by}")
        assert [(r["group"], r["requests"]) for r in rows["data"]] == [(group, served)]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    _, days = await admin_call(http, gw, "GET", f"/admin/spend?group_by=day&from={today}&to={today}")
    assert days["data"][0]["group"] == today
    _, none = await admin_call(http, gw, "GET", "/admin/spend?group_by=day&from=2000-01-01&to=2000-01-02")
    assert none["data"] == []
    with sqlite3.connect(db) as conn:  # the raw records are in the store; the refusal cost nothing
        rows = conn.execute("SELECT key_id, team_id, status, cost_usd FROM spend_log").fetchall()
    conn.close()
    assert len(rows) == served and {r[:3] for r in rows} == {(key["id"], team["id"], 200)}
    assert sum(r[3] for r in rows) == pytest.approx(spent)
    _, shown = await admin_call(http, gw, "GET", f"/admin/keys/{key['id']}")
    assert shown["spend_usd"] == pytest.approx(spent)


async def test_a_stream_is_priced_from_its_usage_and_a_team_budget_binds_its_keys(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    _, team = await admin_call(http, gw, "POST", "/admin/teams", {"name": "t", "budget_usd": 0.03})
    keys = [(await admin_call(http, gw, "POST", "/admin/keys", {"name": f"k{i}", "team": team["id"]}))[1]["key"]
            for i in range(2)]
    body = chat(stream=True, stream_options={"include_usage": True})
    async with http.post(gw.v1 + "/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {keys[0]}"}) as resp:
        assert resp.status == 200
        events = await read_events(resp)
    assert events[-1] == b"[DONE]"
    await flushed(gw)
    _, rows = await admin_call(http, gw, "GET", "/admin/spend?group_by=team")
    assert rows["data"][0]["requests"] == 1 and rows["data"][0]["output_tokens"] > 0
    assert rows["data"][0]["cost_usd"] > 0
    statuses = [(await completion(http, gw, keys[i % 2]))[0] for i in range(10)]
    assert 429 in statuses and statuses.index(429) < 10
    status, body, headers = await completion(http, gw, keys[1])
    assert status == 429 and "Retry-After" not in headers  # a budget without a period never resets


async def test_a_revoked_key_is_refused_by_another_gateway_within_a_second(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    db = tmp_path / "shared.db"
    first = await gateway(governance_config(db, store={"poll_interval_s": 0.5}))
    second = await gateway(governance_config(db, store={"poll_interval_s": 0.5}))
    _, key = await admin_call(http, first, "POST", "/admin/keys", {"name": "shared"})
    deadline = time.monotonic() + 1.5
    while (await completion(http, second, key["key"]))[0] != 200:
        assert time.monotonic() < deadline, "the second gateway never saw the new key"
        await asyncio.sleep(0.02)
    assert (await admin_call(http, first, "DELETE", f"/admin/keys/{key['id']}"))[0] == 200
    revoked_at = time.monotonic()
    assert (await completion(http, first, key["key"]))[0] == 401  # at once where it was revoked
    while (await completion(http, second, key["key"]))[0] != 401:
        assert time.monotonic() - revoked_at < 1.0, "the revocation took more than a second to arrive"
        await asyncio.sleep(0.02)


async def test_with_redis_two_gateways_share_one_budget(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, redis_server: RedisServer) -> None:
    db = tmp_path / "shared.db"
    # A pool for the whole burst: a pool wait that times out is a Redis error, and on a Redis error
    # each gateway falls back to its own counters (documented).
    config = governance_config(db, redis={"url": redis_server.url, "timeout_s": 2, "max_connections": 64,
                                          "pool_wait_s": 2, "connect_timeout_s": 2})
    gateways = [await gateway(config), await gateway(config)]
    _, key = await admin_call(http, gateways[0], "POST", "/admin/keys", {"name": "shared", "budget_usd": 0.1})
    other = gateways[1].app[GOVERNANCE]
    while key["id"] not in other.index.keys:  # until the change poll brought it
        await asyncio.wait_for(other.polled.wait(), 5)
    # Many requests at once through both gateways: together they stay within the one budget.
    results = await asyncio.gather(*(completion(http, gateways[i % 2], key["key"]) for i in range(40)))
    ok = [body for status, body, _ in results if status == 200]
    refused = [body for status, body, _ in results if status == 429]
    assert ok and refused and len(ok) + len(refused) == 40
    spent = sum(b["usage"]["prompt_tokens"] * PER_TOKEN_IN + b["usage"]["completion_tokens"] * PER_TOKEN_OUT
                for b in ok)
    assert spent <= 0.1 + 1e-9
    # Redis holds the settled spend once every request's reservation was corrected (which happens
    # just after each answer went out).
    deadline = time.monotonic() + 5
    while True:
        held = int(redis_server.command("GET", f"llmgw:budget:key:{key['id']}:all").split(b"\r\n")[1])
        if abs(held - spent * 1_000_000) <= len(ok) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert held == pytest.approx(spent * 1_000_000, abs=len(ok))


async def test_a_client_that_leaves_a_stream_is_charged_its_prompt_and_its_reservation_freed(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    slow = {**MOCK_PROVIDER, "options": {"reply": "lorem", "chunk_delay_s": 0.2}}
    db = tmp_path / "gw.db"
    gw = await gateway(governance_config(db, slow))
    gov = gw.app[GOVERNANCE]
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "leaver", "budget_usd": 1})
    async with http.post(gw.v1 + "/chat/completions", json=chat(stream=True, max_tokens=50),
                         headers={"Authorization": f"Bearer {key['key']}"}) as resp:
        assert resp.status == 200
        await resp.content.readline()  # the first chunk arrived; now the client goes away
        assert gov.local.reserved  # the stream's reservation is held
    deadline = time.monotonic() + 10
    while gov.local.reserved:
        assert time.monotonic() < deadline, "the reservation of a cancelled stream was never released"
        await asyncio.wait_for(gov.writer.flushed.wait(), 10)
    await flushed(gw)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, cost_usd, output_tokens FROM spend_log").fetchall()
    conn.close()
    # The prompt's text characters / 4 (plugins.prompt_estimate, the rate limiter's measure too).
    prompt_estimate = len("hello there friend") / 4 * PER_TOKEN_IN
    assert rows == [(499, pytest.approx(prompt_estimate), 0)]
