"""The Redis backend's usual admission (the plan's prebuilt ``ADMIT`` call, headers from the
script's reply) answers as the general path does, against a real redis-server: the same requests
admitted and refused, the same ``x-ratelimit-*`` headers, the general 429s and waits."""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import pytest

from plugins import ratelimit
from plugins.ratelimit_backend import REQUESTS, TOKENS, Limit
from plugins.ratelimit_plan import Plan
from tests.conftest import MOCK_PROVIDER, make_config
from tests.plugins.test_ratelimit import assert_429, chat, seconds
from tests.plugins.test_ratelimit_redis import KEY, backend_of, redis_config

# Slow buckets (an interval of 10 s or more per unit) with whole capacities: nothing drains while
# the test runs, so twin buckets charged a few milliseconds apart admit and refuse alike.
LIMITS = (
    Limit.of("gateway", "global:requests", REQUESTS, 6, 300),  # capacity 30
    Limit.of("gateway", "global:tokens", TOKENS, 6, 3600),  # 360
    Limit.of("provider 'a'", "provider:a:requests", REQUESTS, 3, 400),  # 20
    Limit.of("provider 'a'", "provider:a:tokens", TOKENS, 6, 600),  # 60: larger estimates are capped
    Limit.of("key 'k'", "key:k:tokens", TOKENS, 2, 3000),  # 100
)
SHAPES = (LIMITS, LIMITS[:2], (LIMITS[0], LIMITS[4]), (LIMITS[2], LIMITS[3]), LIMITS[::-1])


def header_seconds(headers: dict[str, str]) -> dict[str, Any]:
    return {k: seconds(v) if k.startswith("x-ratelimit-reset") else v for k, v in headers.items()}


async def test_the_plan_call_admits_refuses_and_reports_as_the_general_path(gateway, redis_server):
    base = redis_config(redis_server.url, rate_limit={"requests_per_minute": 1000})
    fast = backend_of(await gateway({**base, "rate_limit": {**base["rate_limit"], "key_prefix": "fast"}}))
    general = backend_of(await gateway({**base, "rate_limit": {**base["rate_limit"], "key_prefix": "general"}}))
    plans = [Plan.of(shape, "a", fast.prefix) for shape in SHAPES]
    rng = random.Random(20)
    admitted = refused = 0
    for _ in range(60):
        plan, tokens = rng.choice(plans), rng.choice((1, 7, 30, 90, 200))
        charges = plan.charges(tokens)
        reply = await fast.pipe.call(*plan.admit, str(tokens))
        ours = fast.decision(charges, reply)
        theirs = await general.acquire(charges)
        assert fast.admitted(reply) == ours.admitted == theirs.admitted
        if not ours.admitted:
            refused += 1
            assert ours.retry_after == pytest.approx(theirs.retry_after, abs=0.5)
            continue
        admitted += 1
        headers: dict[str, str] = {}
        plan.put_headers(headers, reply, 1e6)
        # From the same reply, exactly the general path's headers, in the same order.
        assert list(headers.items()) == list(ratelimit.ratelimit_headers(ours.views).items())
        # From its twin buckets, the same numbers (resets a few milliseconds apart).
        mine, other = header_seconds(headers), header_seconds(ratelimit.ratelimit_headers(theirs.views))
        assert mine.keys() == other.keys()
        for name, value in mine.items():
            assert value == (pytest.approx(other[name], abs=0.5) if isinstance(value, float) else other[name])
    assert admitted > 10 and refused > 10  # both ways were exercised
    # Every bucket ends where its twin does.
    for limit in LIMITS:
        tats = [int(redis_server.command("GET", backend.prefix + limit.key).split(b"\r\n")[1])
                for backend in (fast, general)]
        assert tats[0] == pytest.approx(tats[1], abs=500_000)


def test_a_plan_carries_its_redis_call_only_on_redis():
    assert Plan.of(LIMITS).admit == ()
    plan = Plan.of(LIMITS, "a", "llmgw:{rl}:")
    assert plan.admit[:3] == ("EVALSHA", plan.admit[1], "5")
    assert plan.admit[3:8] == tuple("llmgw:{rl}:" + limit.key for limit in LIMITS)
    # Per bucket its interval and tolerance as acquire sends them, and one unit or the estimate
    # capped at the capacity (negative: the request's estimate follows, as the last argument).
    assert plan.admit[8::3] == tuple(repr(60_000_000 / limit.per_minute) for limit in LIMITS)
    assert plan.admit[10::3] == ("1", "-360.0", "1", "-60.0", "-100.0")


async def test_usual_admissions_send_the_plan_and_read_the_headers_from_the_reply(gateway, http, redis_server):
    limits = {"requests_per_minute": 4, "tokens_per_minute": 100_000}
    config = redis_config(redis_server.url, {**MOCK_PROVIDER, "rate_limit": limits}, rate_limit=limits,
                          auth={"keys": [{"name": "team", "key": KEY, "rate_limit": limits}]})
    gw = await gateway(config)
    memory = await gateway(make_config({**MOCK_PROVIDER, "rate_limit": limits}, rate_limit=limits,
                                       auth={"keys": [{"name": "team", "key": KEY, "rate_limit": limits}]}))
    backend = backend_of(gw)
    redis_server.command("CONFIG", "RESETSTAT")
    settles = backend.settles.calls
    for i in range(5):
        status, headers, body = await chat(http, gw, Authorization=f"Bearer {KEY}")
        m_status, m_headers, _ = await chat(http, memory, Authorization=f"Bearer {KEY}")
        assert status == m_status == (200 if i < 4 else 429)
        names = ["limit-requests", "remaining-requests", "limit-tokens"] + ["remaining-tokens"] * (i == 0)
        for name in names:  # (tokens remaining once settles began differs by when each was applied)
            assert headers[f"x-ratelimit-{name}"] == m_headers[f"x-ratelimit-{name}"], name
        assert seconds(headers["x-ratelimit-reset-requests"]) == pytest.approx(
            seconds(m_headers["x-ratelimit-reset-requests"]), abs=0.5)
    assert_429(status, headers, body, "gateway", "requests")
    await backend.flush()
    calls = int(re.findall(r"cmdstat_evalsha:calls=(\d+)", redis_server.command("INFO", "commandstats").decode())[0])
    assert calls - (backend.settles.calls - settles) == 5  # one admission call each, the 429's too
    assert backend.breaker.errors == 0


async def test_a_plan_call_after_a_redis_restart_loads_the_script_once(gateway, http, redis_server):
    gw = await gateway(redis_config(redis_server.url, rate_limit={"requests_per_minute": 100}))
    assert (await chat(http, gw))[0] == 200
    redis_server.command("SCRIPT", "FLUSH")  # as after a restart: EVALSHA answers NOSCRIPT
    status, headers, _ = await chat(http, gw)
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "98"
    assert (await chat(http, gw))[2]["choices"]
    assert backend_of(gw).breaker.errors == 0


async def test_a_refused_plan_call_waits_like_the_general_path(gateway, http, redis_server):
    """Room for one request per 0.2 s: the second waits (max_wait_s) instead of a 429."""
    gw = await gateway(redis_config(redis_server.url, rate_limit={
        "requests_per_minute": 300, "window_s": 0.2, "max_wait_s": 2}))
    assert (await chat(http, gw))[0] == 200
    started = time.monotonic()
    status, headers, _ = await chat(http, gw)
    assert status == 200 and 0.1 < time.monotonic() - started < 1.5
    assert headers["x-ratelimit-limit-requests"] == "300"
    statuses = [r[0] for r in await asyncio.gather(*(chat(http, gw) for _ in range(3)))]
    assert statuses == [200, 200, 200]


async def test_one_client_over_its_limit_sends_nobody_else_the_general_way(gateway, http, redis_server, monkeypatch):
    other = "sk-other-key-0123456789"
    gw = await gateway(redis_config(redis_server.url, auth={"keys": [
        {"name": "team", "key": KEY, "rate_limit": {"requests_per_minute": 1}},
        {"name": "other", "key": other, "rate_limit": {"requests_per_minute": 100}}]}))
    backend = backend_of(gw)
    general = []
    acquire = backend.acquire

    async def spy(charges: Any) -> Any:
        general.append([c.limit.key for c in charges])
        return await acquire(charges)

    monkeypatch.setattr(backend, "acquire", spy)
    assert [(await chat(http, gw, Authorization=f"Bearer {KEY}"))[0] for _ in range(2)] == [200, 429]
    assert general == []  # the refusal came from the plan call's reply
    status, headers, body = await chat(http, gw, Authorization=f"Bearer {KEY}")
    assert_429(status, headers, body, "key 'team'", "requests")  # refused here, the general way
    assert general == [["key:team:requests"]]
    for _ in range(3):
        assert (await chat(http, gw, Authorization=f"Bearer {other}"))[0] == 200
    assert len(general) == 1
