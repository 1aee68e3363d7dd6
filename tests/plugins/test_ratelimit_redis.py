"""rate_limit.backend: redis, against a real redis-server: the scripts' semantics, shared state
between gateways, token reservations settled once, fallbacks charged, and one round trip."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.loader import load_data
from plugins import ratelimit
from plugins.ratelimit_backend import REQUESTS, TOKENS, Charge, Limit
from plugins.ratelimit_redis import RedisBackend
from tests.conftest import MOCK_PROVIDER, make_config
from tests.plugins.test_ratelimit import assert_429, chat
from tests.support import free_port, openai_provider

KEY = "sk-team-key-0123456789"
LOREM = {**MOCK_PROVIDER, "name": "lorem", "models": ["lorem-1"], "options": {"reply": "lorem"}}


def redis_config(url: str, *providers: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A Redis-backed config. The command timeout is roomier than the 50 ms default: these tests
    run on a shared, loaded machine and are not about timeouts (test_ratelimit_outage.py is)."""
    rate_limit = {"backend": "redis", **sections.pop("rate_limit", {})}
    roomy = {"url": url, "timeout_s": 0.5, "pool_wait_s": 2, "connect_timeout_s": 2}
    return make_config(*providers, redis=roomy, rate_limit=rate_limit, **sections)


def backend_of(gw: Any) -> RedisBackend:
    backend = gw.app[ratelimit.RATE_LIMIT].backend
    assert isinstance(backend, RedisBackend)
    return backend


def test_check_config_rejects_a_redis_backend_without_a_redis_section():
    with pytest.raises(ConfigError) as exc:
        load_data(make_config(rate_limit={"backend": "redis", "requests_per_minute": 5}), {})
    assert [p for p, _ in exc.value.problems] == ["rate_limit.backend"]
    with pytest.raises(ConfigError) as exc:
        load_data(make_config(rate_limit={"on_store_error": "sometimes"}), {})
    assert exc.value.problems[0][0] == "rate_limit.on_store_error"


async def test_memory_limits_with_several_processes_warn_once(gateway, caplog):
    caplog.set_level(logging.WARNING, "llm_gateway.ratelimit")
    await gateway(make_config(server={"workers": 3}, rate_limit={"requests_per_minute": 5}))
    warnings = [r for r in caplog.records if "per process" in r.getMessage()]
    assert len(warnings) == 1 and "3 gateway processes" in warnings[0].getMessage()
    caplog.clear()
    await gateway(make_config(rate_limit={"requests_per_minute": 5}))  # one process: nothing to say
    await gateway(make_config(server={"workers": 3}))  # no limits: nothing to say
    assert not [r for r in caplog.records if "per process" in r.getMessage()]


async def test_two_gateways_share_one_limit_with_the_same_headers_as_memory(gateway, http, redis_server):
    config = redis_config(redis_server.url, rate_limit={"requests_per_minute": 4})
    a, b = await gateway(config), await gateway(config)
    memory = await gateway(make_config(rate_limit={"requests_per_minute": 4}))
    statuses = []
    for i in range(5):
        status, headers, body = await chat(http, (a, b)[i % 2])
        m_status, m_headers, _ = await chat(http, memory)
        statuses.append(status)
        assert status == m_status
        for name in ("limit-requests", "remaining-requests"):
            assert headers[f"x-ratelimit-{name}"] == m_headers[f"x-ratelimit-{name}"]
    assert statuses == [200, 200, 200, 200, 429]
    assert_429(status, headers, body, "gateway", "requests")
    assert headers["Retry-After"] == m_headers["Retry-After"] == "15"
    # The bucket's key expires once it has drained: PX = TAT - now (+1 s), here about a minute.
    keys = redis_server.command("KEYS", "*").decode()
    assert "llmgw:{rl}:global:requests" in keys
    pttl = int(redis_server.command("PTTL", "llmgw:{rl}:global:requests")[1:].strip())
    assert 55_000 < pttl <= 61_000


async def test_tokens_are_reserved_and_refunded_once(gateway, http, redis_server):
    """40,000 tokens/min, 1,000 reserved per request (800 prompt + max_tokens 200), 300 used."""
    config = redis_config(redis_server.url, LOREM, auth={"keys": [
        {"name": "team", "key": KEY, "rate_limit": {"tokens_per_minute": 40_000}}]})
    gw = await gateway(config)
    prompt = " ".join(["abcdefghijklmnopqrstuvwxyz01234"] * 100)  # 3,199 chars, 100 words
    body = {"model": "lorem-1", "max_tokens": 200, "messages": [{"role": "user", "content": prompt}]}
    auth = {"Authorization": f"Bearer {KEY}"}

    async def burst(n: int) -> list[int]:
        return sorted([r[0] for r in await asyncio.gather(*(chat(http, gw, body, **auth) for _ in range(n)))])

    first = await burst(41)
    assert first.count(200) == 40 and first.count(429) == 1
    backend = backend_of(gw)
    await backend.flush()  # 40 settles of 300 - 1,000 = -700: 28,000 tokens back
    second = await burst(29)
    assert second.count(200) == 28 and second.count(429) == 1
    await backend.flush()  # the second burst's own settles, before the replay is checked
    # A settle replayed with the same id changes nothing.
    limit = gw.app[ratelimit.RATE_LIMIT].key_limits["team"][0]
    assert limit.kind == TOKENS
    before = redis_server.command("GET", "llmgw:{rl}:key:team:tokens")
    assert await backend.settle_now([("replayed", [(limit, -5_000)])]) == [1]
    after_first = redis_server.command("GET", "llmgw:{rl}:key:team:tokens")
    assert after_first != before
    assert await backend.settle_now([("replayed", [(limit, -5_000)])]) == [0]
    assert redis_server.command("GET", "llmgw:{rl}:key:team:tokens") == after_first


async def test_a_fallback_charges_the_fallback_providers_limit(gateway, http):
    dead = openai_provider(f"http://127.0.0.1:{free_port()}", name="dead", models=["m"])
    second = {**MOCK_PROVIDER, "name": "second", "models": ["other-1"], "rate_limit": {"requests_per_minute": 1}}
    gw = await gateway(make_config(dead, second, models=[{"name": "smart", "targets": ["dead/m", "second/other-1"]}]))
    status, headers, _ = await chat(http, gw, {"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and headers["x-gateway-provider"] == "second"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    status, headers, body = await chat(http, gw, {"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    assert_429(status, headers, body, "provider 'second'", "requests")


async def test_an_admission_is_one_redis_round_trip(gateway, http, redis_server):
    config = redis_config(redis_server.url, {**MOCK_PROVIDER, "rate_limit": {"requests_per_minute": 1000}},
                          rate_limit={"requests_per_minute": 1000},
                          auth={"keys": [{"name": "team", "key": KEY, "rate_limit": {"requests_per_minute": 1000}}]})
    gw = await gateway(config)
    await chat(http, gw, None, Authorization=f"Bearer {KEY}")  # connections and scripts warm
    redis_server.command("CONFIG", "RESETSTAT")
    for _ in range(20):
        assert (await chat(http, gw, None, Authorization=f"Bearer {KEY}"))[0] == 200
    stats = redis_server.command("INFO", "commandstats").decode()
    calls = {m[0]: int(m[1]) for m in re.findall(r"cmdstat_([a-z|]+):calls=(\d+)", stats)}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    # Per request exactly one EVALSHA, which runs TIME, 3 GETs and 3 SETs inside the script.
    assert calls.pop("evalsha") == 20
    assert {k for k in calls if calls[k]} <= {"time", "get", "set"}, calls
    assert backend_of(gw).breaker.errors == 0


async def test_scripts_are_all_or_nothing_and_reload_after_a_flush(redis_server, gateway):
    gw = await gateway(redis_config(redis_server.url, rate_limit={"requests_per_minute": 1}))
    backend = backend_of(gw)
    roomy = Limit.of("gateway", "roomy:requests", REQUESTS, 60, 60)
    full = Limit.of("gateway", "full:requests", REQUESTS, 1, 60)
    assert (await backend.acquire([Charge(roomy, 1), Charge(full, 1)])).admitted
    decision = await backend.acquire([Charge(roomy, 1), Charge(full, 1)])
    assert not decision.admitted and decision.retry_after == pytest.approx(60, abs=0.1)
    assert decision.views[0].remaining == pytest.approx(59, abs=0.2)  # roomy not charged again
    redis_server.command("SCRIPT", "FLUSH")  # as after a restart: EVALSHA answers NOSCRIPT
    decision = await backend.acquire([Charge(roomy, 1)])
    assert decision.admitted and decision.views[0].remaining == pytest.approx(58, abs=0.2)
    assert backend.breaker.errors == 0
    # A refund below empty deletes the key (nothing left to expire); settles reload their script too.
    redis_server.command("SCRIPT", "FLUSH")
    assert await backend.settle_now([("r1", [(roomy, -100)])]) == [1]
    assert redis_server.command("EXISTS", backend.prefix + roomy.key) == b":0\r\n"


async def test_a_burst_larger_than_the_pool_shares_the_pipelined_connection(gateway, http, redis_server):
    """Two connections, 30 requests at once: the admissions need no pooled connection (they share
    the pipelined one, several to a write), nothing counts as a store error and nothing falls
    back to the local shares."""
    config = redis_config(redis_server.url, rate_limit={"requests_per_minute": 25, "replicas": 5})
    config["redis"]["max_connections"] = 2
    gw = await gateway(config)
    backend = backend_of(gw)
    calls, batches = backend.pipe.calls, backend.pipe.batches
    statuses = sorted([r[0] for r in await asyncio.gather(*(chat(http, gw) for _ in range(30)))])
    assert statuses.count(200) == 25 and statuses.count(429) == 5  # the shared 25, not a local 5
    assert backend.breaker.errors == 0 and not backend.breaker.open
    assert backend.pipe.calls - calls >= 25
    assert backend.pipe.batches - batches < backend.pipe.calls - calls  # some writes carried several


async def test_a_full_requests_limit_refuses_without_asking_redis_again(gateway, http, redis_server):
    gw = await gateway(redis_config(redis_server.url, rate_limit={"requests_per_minute": 2}))
    assert [(await chat(http, gw))[0] for _ in range(3)] == [200, 200, 429]  # the 429 from Redis
    redis_server.command("CONFIG", "RESETSTAT")
    for _ in range(3):
        status, headers, body = await chat(http, gw)
        assert_429(status, headers, body, "gateway", "requests")
        assert headers["Retry-After"] == "30" and headers["x-ratelimit-remaining-requests"] == "0"
    assert b"cmdstat_evalsha" not in redis_server.command("INFO", "commandstats")


def test_a_request_without_max_tokens_reserves_the_default_cap():
    from gateway.context import RequestContext
    from gateway.operations import CHAT
    from plugins.ratelimit_tokens import estimate_tokens

    ctx = RequestContext(None, CHAT, "req")  # type: ignore[arg-type]
    ctx.body = {"messages": [{"role": "user", "content": "x" * 40}]}
    assert estimate_tokens(ctx) == 10
    assert estimate_tokens(ctx, default_max_tokens=500) == 510
    ctx.body["max_tokens"] = 7
    assert estimate_tokens(ctx, default_max_tokens=500) == 17
