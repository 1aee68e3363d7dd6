"""A virtual key's rate_limit, enforced over HTTP like a static key's: in process memory, and
through Redis shared by two gateways."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway import Principal
from gateway.config import RateLimitSpec
from plugins.governance import GOVERNANCE
from plugins.ratelimit_backend import REQUESTS, Charge, InProcessBackend, Limit
from plugins.ratelimit_keys import RunTimeLimits
from tests.conftest import StartGateway
from tests.governance.conftest import admin_call, completion, governance_config
from tests.plugins.test_ratelimit import assert_429
from tests.services import RedisServer


async def test_a_virtual_keys_requests_per_minute_is_enforced_and_a_patch_takes_effect(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    _, key = await admin_call(http, gw, "POST", "/admin/keys",
                              {"name": "limited", "rate_limit": {"requests_per_minute": 3}})
    _, free = await admin_call(http, gw, "POST", "/admin/keys", {"name": "unlimited"})
    for _ in range(3):
        status, _, headers = await completion(http, gw, key["key"])
        assert status == 200 and headers["x-ratelimit-limit-requests"] == "3"
    status, body, headers = await completion(http, gw, key["key"])
    assert_429(status, headers, body, f"key '{key['id']}'", "requests")
    assert key["key"] not in str(body) and key["key"] not in str(dict(headers))
    for _ in range(5):  # another key is not limited by it, nor limited at all
        status, _, headers = await completion(http, gw, free["key"])
        assert status == 200 and "x-ratelimit-limit-requests" not in headers
    status, patched = await admin_call(http, gw, "PATCH", f"/admin/keys/{key['id']}",
                                       {"rate_limit": {"requests_per_minute": 10}})
    assert status == 200 and patched["rate_limit"]["requests_per_minute"] == 10
    status, _, headers = await completion(http, gw, key["key"])
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "10"
    await admin_call(http, gw, "PATCH", f"/admin/keys/{key['id']}", {"rate_limit": None})
    status, _, headers = await completion(http, gw, key["key"])
    assert status == 200 and "x-ratelimit-limit-requests" not in headers


async def test_with_redis_two_gateways_share_a_virtual_keys_limit(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, redis_server: RedisServer) -> None:
    config = governance_config(
        tmp_path / "shared.db", rate_limit={"backend": "redis"},
        redis={"url": redis_server.url, "timeout_s": 0.5, "pool_wait_s": 2, "connect_timeout_s": 2})
    gateways = [await gateway(config), await gateway(config)]
    _, key = await admin_call(http, gateways[0], "POST", "/admin/keys",
                              {"name": "shared", "rate_limit": {"requests_per_minute": 3}})
    other = gateways[1].app[GOVERNANCE]
    while key["id"] not in other.index.keys:  # until the change poll brought it
        await asyncio.wait_for(other.polled.wait(), 5)
    statuses = [(await completion(http, gateways[i % 2], key["key"]))[0] for i in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    stored = redis_server.command("KEYS", "llmgw:*vkey*")
    assert key["id"].encode() in stored and key["key"].encode() not in stored


async def test_drained_buckets_are_pruned_and_live_ones_kept() -> None:
    backend = InProcessBackend()
    backend._prune_at = 4  # as if 4 buckets were the threshold
    live = Limit.of("key 'a'", "vkey:a:1:0:requests", REQUESTS, 1, 60)
    await backend.acquire([Charge(live, 1)])
    gone = [Limit.of("x", f"vkey:{i}:60000:0:requests", REQUESTS, 60_000, 60) for i in range(3)]
    for limit in gone:  # 60,000 a minute drains a unit in a millisecond
        await backend.acquire([Charge(limit, 1)])
    await asyncio.sleep(0.01)
    await backend.acquire([Charge(Limit.of("y", "vkey:new:1:0:requests", REQUESTS, 1, 60), 1)])  # prunes first
    assert set(backend._tats) == {live.key, "vkey:new:1:0:requests"}
    assert backend.level(live) == pytest.approx(1, abs=0.01)


def test_a_virtual_keys_limits_are_built_once_per_spec() -> None:
    limits = RunTimeLimits(60.0)
    spec = RateLimitSpec(requests_per_minute=3, tokens_per_minute=100)
    principal = Principal("key_a", (), {"rate_limit": spec})
    first = limits.of(principal)
    assert [lim.key for lim in first] == ["vkey:key_a:3:100:requests", "vkey:key_a:3:100:tokens"]
    assert limits.of(Principal("key_a", (), {"rate_limit": spec})) is first  # the cached tuple, nothing new
    changed = limits.of(Principal("key_a", (), {"rate_limit": RateLimitSpec(requests_per_minute=5)}))
    assert [lim.key for lim in changed] == ["vkey:key_a:5:0:requests"]
    assert limits.of(Principal("key_b", (), {"key_id": "key_b"})) == () and limits.of(Principal("static")) == ()


def test_the_key_limits_benchmark_runs() -> None:
    out = subprocess.run([sys.executable, "benchmarks/key_limits.py", "--rounds", "2", "--batch", "50"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert re.search(r"^virtual / static: \d+\.\d+$", out, re.M), out
