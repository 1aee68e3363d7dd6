"""Redis stopped (SIGSTOP), then killed, then back, under each rate_limit.on_store_error, with the
default 50 ms command timeout: admissions never wait 100 ms more than with Redis up, the breaker
takes Redis off the request path, and limits are shared again within 5 s of Redis answering."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

import pytest

from tests.conftest import make_config
from tests.plugins.test_ratelimit import chat
from tests.support import free_port

LIMIT = 30  # per minute; with replicas: 3 each process enforces 10 while Redis is away


async def timed(http: Any, gw: Any) -> tuple[int, Any, dict[str, Any], float]:
    started = time.perf_counter()
    status, headers, body = await chat(http, gw)
    return status, headers, body, time.perf_counter() - started


async def limits_state(http: Any, gw: Any) -> dict[str, Any]:
    async with http.get(gw.url + "/health/limits") as resp:
        return await resp.json()


def expected(policy: str, n: int) -> list[int]:
    return {"local": [200] * 10 + [429] * (n - 10), "open": [200] * n, "closed": [503] * n}[policy]


@pytest.mark.parametrize("policy", ["local", "open", "closed"])
async def test_redis_stopped_killed_and_back(policy, gateway, http, redis_private, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway(make_config(redis={"url": redis_private.url}, rate_limit={
        "backend": "redis", "on_store_error": policy, "replicas": 3, "requests_per_minute": LIMIT}))
    up = [await timed(http, gw) for _ in range(6)]
    assert [r[0] for r in up] == [200] * 6
    baseline = statistics.median(r[3] for r in up)

    redis_private.pause()
    stopped = [await timed(http, gw) for _ in range(8)]
    redis_private.kill()
    killed = [await timed(http, gw) for _ in range(6)]
    during = stopped + killed
    assert [r[0] for r in during] == expected(policy, len(during))
    worst = max(r[3] for r in during)
    assert worst - baseline < 0.1, f"an admission waited {worst - baseline:.3f}s extra"
    # Once the breaker is open, Redis is off the request path entirely.
    assert statistics.median(r[3] for r in killed) - baseline < 0.02
    for status, headers, body, _ in during:
        if status == 503:
            assert body["error"]["type"] == "service_unavailable" and headers["Retry-After"] == "1"
        if status == 429:
            assert int(headers["Retry-After"]) >= 1 and headers["x-ratelimit-limit-requests"] == "10"
    state = await limits_state(http, gw)
    assert state["state"] == "degraded" and state["on_store_error"] == policy and state["store_errors"] >= 3
    async with http.get(gw.url + "/metrics") as resp:
        assert f'llm_gateway_ratelimit_degraded{{policy="{policy}"}} 1.0' in await resp.text()

    redis_private.start()  # an empty Redis on the same port
    answered = time.monotonic()
    while (await limits_state(http, gw))["state"] != "shared":
        assert time.monotonic() - answered < 5, "limits not shared again within 5 s of Redis answering"
        await asyncio.sleep(0.05)
    status, headers, _, _ = await timed(http, gw)
    assert status == 200 and headers["x-ratelimit-limit-requests"] == str(LIMIT)
    assert b"llmgw:{rl}:global:requests" in redis_private.command("KEYS", "*")

    lines = [r.getMessage() for r in caplog.records if r.name == "llm_gateway.store"]
    assert len([m for m in lines if "unavailable" in m]) == 1
    assert len([m for m in lines if "answers again" in m]) == 1
    assert not any(str(redis_private.port) in m for m in lines)  # no URL, so never a password


async def test_unreachable_redis_costs_little_and_never_shows_its_password(gateway, http, caplog):
    """Nothing listens at the URL: refused at once, the breaker opens, requests are decided
    locally; the URL's password is in no log line, health answer or metric."""
    caplog.set_level(logging.DEBUG)
    url = f"redis://:canary-redis-password-1234@127.0.0.1:{free_port()}/0"
    gw = await gateway(make_config(redis={"url": url}, rate_limit={
        "backend": "redis", "replicas": 3, "requests_per_minute": LIMIT}))
    results = [await timed(http, gw) for _ in range(12)]
    assert [r[0] for r in results] == [200] * 10 + [429] * 2
    assert max(r[3] for r in results) < 0.1
    state = await limits_state(http, gw)
    assert state["state"] == "degraded"
    async with http.get(gw.url + "/metrics") as resp:
        metrics = await resp.text()
    seen = "\n".join(r.getMessage() for r in caplog.records) + str(state) + metrics
    seen += "".join(str(r[2]) for r in results)
    assert "canary-redis-password" not in seen
