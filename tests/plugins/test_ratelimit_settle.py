"""Token settles on Redis, against a real redis-server: many requests' settles in one script call,
each applied once, and bounded when things go wrong (a full queue drops and counts, a Redis that
is away gets the local shares corrected, a bad settle never stops the later ones)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from typing import Any

import pytest

from plugins import ratelimit, ratelimit_settle
from plugins.ratelimit_backend import TOKENS, Limit
from plugins.ratelimit_redis import RedisBackend
from tests.plugins.test_ratelimit_redis import backend_of, redis_config

LIMITS = {"tokens_per_minute": 6_000}  # 100 tokens a second: a unit is 10,000 microseconds


async def tokens_backend(gateway: Any, url: str, **rate_limit: Any) -> tuple[RedisBackend, Limit]:
    gw = await gateway(redis_config(url, rate_limit={**LIMITS, **rate_limit}))
    limit = gw.app[ratelimit.RATE_LIMIT].global_limits[0]
    assert limit.kind == TOKENS
    return backend_of(gw), limit


def tat(redis: Any, key: str) -> int:
    return int(redis.command("GET", key).split(b"\r\n")[1])


def now_us(redis: Any) -> int:
    lines = redis.command("TIME").split(b"\r\n")  # *2, $n, seconds, $n, microseconds
    return int(lines[2]) * 1_000_000 + int(lines[4])


def evalsha_calls(redis: Any) -> int:
    found = re.findall(r"cmdstat_evalsha:calls=(\d+)", redis.command("INFO", "commandstats").decode())
    return int(found[0]) if found else 0


async def test_many_requests_settles_go_out_as_one_script_call(gateway, redis_server):
    backend, limit = await tokens_backend(gateway, redis_server.url)
    key = backend.prefix + limit.key
    redis_server.command("CONFIG", "RESETSTAT")
    writes, calls = backend.settles.batches, backend.settles.calls
    for i in range(20):  # twenty requests' debts, 50 tokens each
        backend.settle(f"req-{i}", [(limit, 50)])
    assert backend.pending() == 20
    await backend.flush()
    assert backend.pending() == 0
    assert (backend.settles.batches - writes, backend.settles.calls - calls, evalsha_calls(redis_server)) == (1, 1, 1)
    ahead = tat(redis_server, key) - now_us(redis_server)
    assert 20 * 50 * 10_000 - 2_000_000 < ahead <= 20 * 50 * 10_000  # 1,000 tokens: 10 s of the bucket
    # The same client request id twice is still two settles: each has an id of its own.
    backend.settle("same", [(limit, 100)])
    backend.settle("same", [(limit, 100)])
    before = tat(redis_server, key)
    await backend.flush()
    assert tat(redis_server, key) == pytest.approx(before + 200 * 10_000, abs=100_000)


async def test_a_settle_replayed_in_a_batch_changes_nothing(gateway, redis_server):
    backend, limit = await tokens_backend(gateway, redis_server.url)
    key = backend.prefix + limit.key
    assert await backend.settle_now([("a", [(limit, 100)]), ("b", [(limit, 100)])]) == [1, 1]
    first = tat(redis_server, key)
    assert await backend.settle_now([("a", [(limit, 100)]), ("c", [(limit, 300)]), ("b", [(limit, 1)])]) == [0, 1, 0]
    assert tat(redis_server, key) == pytest.approx(first + 300 * 10_000, abs=100_000)


async def test_more_settles_than_a_call_takes_are_several_calls_in_one_write(gateway, redis_server):
    backend, limit = await tokens_backend(gateway, redis_server.url)
    writes, calls = backend.settles.batches, backend.settles.calls
    n = 2 * ratelimit_settle.SETTLE_BATCH + 3
    assert await backend.settle_now([(f"s{i}", [(limit, 1)]) for i in range(n)]) == [1] * n
    assert (backend.settles.batches - writes, backend.settles.calls - calls) == (1, 3)


async def test_a_full_queue_drops_settles_and_counts_them(gateway, http, redis_server, monkeypatch):
    monkeypatch.setattr(ratelimit_settle, "SETTLE_QUEUE", 3)
    backend, limit = await tokens_backend(gateway, redis_server.url)
    for i in range(5):
        backend.settle(f"r{i}", [(limit, 10)])
    assert (backend.pending(), backend.settles_dropped) == (3, 2)
    await backend.flush()
    assert backend.pending() == 0
    backend.settle("later", [(limit, 10)])  # room again
    assert (backend.pending(), backend.settles_dropped) == (1, 2)
    await backend.flush()


async def test_settles_redis_cannot_take_correct_the_local_shares(gateway, redis_private):
    backend, limit = await tokens_backend(gateway, redis_private.url, replicas=2)
    redis_private.kill()
    errors = backend.breaker.errors
    n = ratelimit_settle.SETTLE_BATCH + 1  # two calls, one store error
    assert await backend.settle_now([(f"s{i}", [(limit, 10)]) for i in range(n)]) == []
    assert backend.breaker.errors == errors + 1
    assert backend.local.level(backend.scaled(limit)) == pytest.approx(10 * n, abs=25)  # drains at 50 a second
    # Queued settles take the same way, and flush still returns.
    backend.settle("queued", [(limit, 10)])
    await asyncio.wait_for(backend.flush(), 5)
    assert backend.local.level(backend.scaled(limit)) == pytest.approx(10 * (n + 1), abs=25)


async def test_a_bad_settle_never_stops_the_later_ones(gateway, redis_server, caplog):
    caplog.set_level(logging.ERROR, "llm_gateway.ratelimit")
    backend, limit = await tokens_backend(gateway, redis_server.url)
    backend.settle("broken", [(None, 10)])  # type: ignore[list-item]
    await asyncio.wait_for(backend.flush(), 5)
    assert any("settling 1 requests failed" in r.getMessage() for r in caplog.records)
    backend.settle("fine", [(limit, 100)])
    await asyncio.wait_for(backend.flush(), 5)
    assert redis_server.command("EXISTS", backend.prefix + limit.key) == b":1\r\n"


async def test_settles_resume_after_the_task_sending_them_was_cancelled(gateway, redis_server):
    backend, limit = await tokens_backend(gateway, redis_server.url)
    backend.settle("first", [(limit, 1_000)])  # 10 s of the bucket
    await asyncio.wait_for(backend.flush(), 5)
    before = tat(redis_server, backend.prefix + limit.key)
    task = backend.pending_settles._drain_task
    assert task is not None
    task.cancel()  # as if a settle call were cancelled under it
    with contextlib.suppress(asyncio.CancelledError):
        await task
    backend.settle("second", [(limit, 100)])
    await asyncio.wait_for(backend.flush(), 5)
    assert tat(redis_server, backend.prefix + limit.key) == before + 100 * 10_000


async def test_a_batched_call_leaves_every_bucket_as_one_call_per_settle_would(gateway, redis_server):
    """Random settles of one to three buckets each, debts and refunds (some below empty): one call
    for them all on one set of buckets, a call each on a twin set, and the twins agree."""
    base = redis_config(redis_server.url, rate_limit=LIMITS)
    batched = backend_of(await gateway({**base, "rate_limit": {**base["rate_limit"], "key_prefix": "batched"}}))
    single = backend_of(await gateway({**base, "rate_limit": {**base["rate_limit"], "key_prefix": "single"}}))
    # Slow buckets (10 s a unit or more): the milliseconds between the twins' calls change nothing.
    limits = [Limit.of("gateway", f"b{i}:tokens", TOKENS, n, 600) for i, n in enumerate((6, 3, 2, 1))]
    rng = random.Random(20)
    settles = []
    for i in range(40):
        chosen = rng.sample(limits, rng.randint(1, 3))
        settles.append((f"s{i}", [(limit, rng.choice((-30, -2, 1, 5, 40))) for limit in chosen]))
    settles.append(("last", [(limits[1], 7), (limits[0], -10_000)]))
    assert await batched.settle_now(settles) == [1] * len(settles)
    for settle in settles:
        assert await single.settle_now([settle]) == [1]
    gone = 0
    for limit in limits:
        twins = [redis_server.command("GET", backend.prefix + limit.key) for backend in (batched, single)]
        if twins[0] == b"$-1\r\n":  # refunded below empty: gone from both
            assert twins[1] == twins[0]
            gone += 1
            continue
        values = [int(value.split(b"\r\n")[1]) for value in twins]
        assert values[0] == pytest.approx(values[1], abs=200_000)
    assert 0 < gone < len(limits), gone  # both ways were exercised
