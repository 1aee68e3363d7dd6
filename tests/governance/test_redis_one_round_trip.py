"""Budgets, rate limits and the cache all on Redis: the budget reservation, the cache lookup and the
admission leave in one write, so a request waits for one Redis round trip; a budget refusal is
still the 429, and a request the rate limiter refuses gives its budget reservation back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from plugins import ratelimit
from tests.conftest import MOCK_PROVIDER, StartGateway
from tests.governance.conftest import admin_call, chat, completion, governance_config
from tests.plugins.test_redis_round_trips import DelayingProxy
from tests.services import RedisServer

ROOMY = {"requests_per_minute": 100_000}


def all_on_redis(db: Path, url: str, timeout_s: float, **limits: Any) -> dict[str, Any]:
    return governance_config(
        db, {**MOCK_PROVIDER, "rate_limit": ROOMY},
        redis={"url": url, "timeout_s": timeout_s, "connect_timeout_s": 2},
        rate_limit={"backend": "redis", **(limits or ROOMY)},
        cache={"enabled": True, "backend": "redis"},
    )


async def test_budget_lookup_and_admission_go_out_in_one_write(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, redis_server: RedisServer) -> None:
    gw = await gateway(all_on_redis(tmp_path / "g.db", redis_server.url, 0.5))
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "k", "budget_usd": 100.0})
    pipe = gw.app[ratelimit.RATE_LIMIT].backend.pipe
    assert (await completion(http, gw, key["key"], chat("warm")))[0] == 200
    await asyncio.sleep(0.1)
    for i in range(5):
        await asyncio.sleep(0.05)  # the last request's settle and store, sent after its response
        pipe.recent.clear()
        status, _, headers = await completion(http, gw, key["key"], chat(f"question {i}"))
        assert status == 200 and headers["x-cache"] == "MISS"
        # Before the response: one write with the reservation, the lookup and the admission.
        assert pipe.recent[0] == ("EVALSHA", "GET", "EVALSHA"), list(pipe.recent)


async def test_a_request_waits_for_one_round_trip_with_budgets_on_redis(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, redis_server: RedisServer) -> None:
    delay = 0.15
    proxy = DelayingProxy(redis_server.port, delay)
    await proxy.start()
    try:
        gw = await gateway(all_on_redis(tmp_path / "g.db", f"redis://127.0.0.1:{proxy.port}/0", 1.0))
        _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "k", "budget_usd": 100.0})
        assert (await completion(http, gw, key["key"], chat("warm")))[0] == 200
        took = []  # back to back on one connection: the settle of one never delays the next
        for i in range(3):
            started = time.perf_counter()
            status, _, _ = await completion(http, gw, key["key"], chat(f"question {i}"))
            took.append(time.perf_counter() - started)
            assert status == 200
        assert delay <= min(took) and max(took) < 1.6 * delay, took  # two round trips would be 2x
    finally:
        await proxy.close()


async def test_refusals_on_redis_keep_the_budget_exact(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, redis_server: RedisServer) -> None:
    gw = await gateway(all_on_redis(tmp_path / "g.db", redis_server.url, 1.0))
    # A key limited to 2 requests a minute: its third request is refused by the rate limiter after
    # its budget reservation went out; the reservation is given back once its answer is in.
    _, key = await admin_call(http, gw, "POST", "/admin/keys",
                              {"name": "k", "budget_usd": 100.0, "rate_limit": {"requests_per_minute": 2}})
    statuses = [(await completion(http, gw, key["key"], chat(f"q{i}")))[0] for i in range(4)]
    assert statuses == [200, 200, 429, 429]
    counter = f"llmgw:budget:key:{key['id']}:all"
    deadline = time.monotonic() + 5
    while True:  # each settle follows its response; the spend rows are written behind
        held = int(redis_server.command("GET", counter).split(b"\r\n")[1])
        _, spend = await admin_call(http, gw, "GET", "/admin/spend?group_by=key")
        rows = [r for r in spend["data"] if r["requests"] == 2]
        if (held < 1_000_000 and rows) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    # Redis holds exactly the two served requests' real cost (micro-dollars): no refused
    # request's reservation is left in it.
    assert rows and abs(held - rows[0]["cost_usd"] * 1_000_000) <= 2, (held, spend)  # rounding: 1 a request
    # A key whose budget is used up: the budget's own 429, though its answer is taken after the
    # limiter's admission.
    _, poor = await admin_call(http, gw, "POST", "/admin/keys", {"name": "poor", "budget_usd": 0.0})
    status, body, _ = await completion(http, gw, poor["key"], chat("anything"))
    assert status == 429 and body["error"]["code"] == "budget_exceeded", body
