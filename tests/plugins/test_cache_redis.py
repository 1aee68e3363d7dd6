"""The response cache on both backends (memory and a real redis-server): the same behaviour, a
shared store, singleflight, key scoping, and store errors that are misses, never failures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from gateway.errors import ConfigError
from gateway.loader import load_data
from plugins import cache
from plugins.cache_store import KEY_PREFIX, RedisStore
from tests.conftest import make_config
from tests.plugins.test_cache import CHAT_BODY, post, sse_events, x_cache
from tests.services import RedisServer
from tests.stub_upstream import StubUpstream, start_stub, stub_provider

BACKENDS = ["memory", "redis"]


async def eventually(check: Any, timeout_s: float = 5.0) -> bool:
    """Poll ``check`` (sync or async) until true, for at most ``timeout_s``: for state that
    changes after a response (a store written once the client has its last byte)."""
    for _ in range(int(timeout_s / 0.01)):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.fixture(params=BACKENDS)
def cache_config(request: pytest.FixtureRequest) -> Any:
    """``cache_config(**cache_settings, **other_sections)``: a config with the cache on, on the
    parametrised backend (redis: the session's redis-server, emptied for the test)."""
    backend = request.param
    redis = request.getfixturevalue("redis_server") if backend == "redis" else None

    def build(*providers: dict[str, Any], sections: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
        extra = dict(sections or {})
        if redis is not None:  # generous: a loaded test machine is not a store error
            extra["redis"] = {"url": redis.url, "timeout_s": 2}
        return make_config(*providers, cache={"enabled": True, "backend": backend, **settings}, **extra)

    build.backend = backend  # type: ignore[attr-defined]
    return build


async def test_miss_hit_bypass_and_no_store_alike_on_both_backends(gateway, http, cache_config):
    gw = await gateway(cache_config())
    _, headers, first = await post(http, gw)
    assert headers["x-cache"] == "MISS"
    _, headers, second = await post(http, gw)
    assert headers["x-cache"] == "HIT" and headers["x-gateway-provider"] == "mock" and second == first
    _, headers, fresh = await post(http, gw, **{"Cache-Control": "no-cache"})
    assert headers["x-cache"] == "MISS" and fresh["id"] != first["id"]
    _, _, again = await post(http, gw)
    assert again["id"] == fresh["id"]  # no-cache stored the fresh answer
    other = {**CHAT_BODY, "messages": [{"role": "user", "content": "not stored"}]}
    assert await x_cache(http, gw, other, **{"Cache-Control": "no-store"}) == "MISS"
    assert await x_cache(http, gw, other) == "MISS"  # no-store stored nothing


async def test_a_hit_is_replayed_to_a_streaming_client(gateway, http, cache_config):
    gw = await gateway(cache_config())
    _, _, stored = await post(http, gw)
    async with http.post(gw.v1 + "/chat/completions", json={**CHAT_BODY, "stream": True}) as resp:
        assert resp.status == 200 and resp.headers["x-cache"] == "HIT"
        events = sse_events(await resp.text())
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == \
        stored["choices"][0]["message"]["content"]


async def test_an_answer_over_the_entry_cap_is_not_stored(gateway, http, cache_config):
    gw = await gateway(cache_config(max_entry_bytes=100))  # every answer of the mock is larger
    assert await x_cache(http, gw) == "MISS"
    assert await x_cache(http, gw) == "MISS"
    small = await gateway(cache_config(max_entry_bytes=100_000))
    assert await x_cache(http, small) == "MISS"
    assert await x_cache(http, small) == "HIT"


async def test_scope_key_keeps_each_keys_answers_to_itself(gateway, http, cache_config):
    keys = {"keys": [{"name": "a", "key": "sk-a-123"}, {"name": "b", "key": "sk-b-456"}]}
    shared = await gateway(cache_config(sections={"auth": keys}))
    assert await x_cache(http, shared, **{"x-api-key": "sk-a-123"}) == "MISS"
    assert await x_cache(http, shared, **{"x-api-key": "sk-b-456"}) == "HIT"  # shared: documented default
    isolated = await gateway(cache_config(sections={"auth": keys}, scope="key",
                                          ttl_s=60, max_entry_bytes=1_000_000))
    body = {**CHAT_BODY, "temperature": 0.5}
    assert await x_cache(http, isolated, body, **{"x-api-key": "sk-a-123"}) == "MISS"
    assert await x_cache(http, isolated, body, **{"x-api-key": "sk-b-456"}) == "MISS"
    assert await x_cache(http, isolated, body, **{"x-api-key": "sk-a-123"}) == "HIT"
    assert await x_cache(http, isolated, body, **{"x-api-key": "sk-b-456"}) == "HIT"


async def test_concurrent_identical_requests_make_one_upstream_call(gateway, http, cache_config):
    stub: StubUpstream = await start_stub()
    try:
        provider = stub_provider("slow", stub.url, "sk-up", ["hang"], timeouts={"first_byte_s": 10})
        gw = await gateway(cache_config(provider))
        body = {"model": "hang", "messages": [{"role": "user", "content": "once"}]}
        tasks = [asyncio.create_task(post(http, gw, body)) for _ in range(8)]
        flights = gw.app[cache.CACHE].flights
        # One went upstream, seven wait for it.
        assert await eventually(lambda: len(stub.keys_seen) == 1 and flights.following == 7)
        stub.release.set()
        results = await asyncio.gather(*tasks)
        assert [status for status, _, _ in results] == [200] * 8
        assert len(stub.keys_seen) == 1  # one upstream call for eight identical requests
        assert sorted(h["x-cache"] for _, h, _ in results) == ["HIT"] * 7 + ["MISS"]
        assert len({orjson.dumps(reply) for _, _, reply in results}) == 1
        assert await eventually(lambda: len(flights) == 0)  # ended once the answer was stored
    finally:
        await stub.close()


async def test_an_entry_stored_by_one_gateway_is_a_hit_in_another(gateway, http, redis_server):
    config = make_config(cache={"enabled": True, "backend": "redis"}, redis={"url": redis_server.url, "timeout_s": 2})
    a, b = await gateway(config), await gateway(config)
    _, headers, first = await post(http, a)
    assert headers["x-cache"] == "MISS"
    # Stored once A's client had its last byte, i.e. just after this response.
    assert await eventually(lambda: redis_server.command("DBSIZE") == b":1\r\n")
    _, headers, second = await post(http, b)
    assert headers["x-cache"] == "HIT" and second == first


async def test_a_separate_cache_redis_and_a_compact_entry_with_a_ttl(gateway, http, redis_server, redis_private):
    config = make_config(cache={"enabled": True, "backend": "redis", "redis_url": redis_private.url, "ttl_s": 30},
                         redis={"url": redis_server.url, "timeout_s": 2})
    gw = await gateway(config)
    many = {"model": "mock-embed", "input": [f"text {i}" for i in range(20)]}  # vectors: over 1 KiB
    status, headers, _ = await post(http, gw, many, "/embeddings")
    assert status == 200 and headers["x-cache"] == "MISS"
    assert redis_server.command("DBSIZE") == b":0\r\n"  # nothing in the shared-state Redis
    assert await eventually(lambda: redis_private.command("DBSIZE") == b":1\r\n")
    keys = redis_private.command("KEYS", KEY_PREFIX + "*").split(b"\r\n")
    key = next(k for k in keys if k.startswith(KEY_PREFIX.encode())).decode()
    ttl_ms = int(redis_private.command("PTTL", key)[1:])
    assert 25_000 < ttl_ms <= 30_000
    stored = redis_private.command("GET", key)
    assert stored.split(b"\r\n", 1)[1][:1] == b"\x01"  # over 1 KiB: stored compressed
    assert (await post(http, gw, many, "/embeddings"))[1]["x-cache"] == "HIT"


async def misses_until_hit(http: Any, gw: Any, timeout_s: float = 5.0) -> list[str]:
    """``x-cache`` of the same request, sent until it is a HIT (bounded): every one answered 200."""
    outcomes: list[str] = []
    for _ in range(int(timeout_s / 0.05)):
        outcomes.append(await x_cache(http, gw))
        if outcomes[-1] == "HIT":
            break
        await asyncio.sleep(0.05)
    return outcomes


@pytest.mark.parametrize("lock_wait_s", [0, 5])  # with the lock: its scripts load again after a restart
async def test_store_errors_are_misses_within_a_bounded_time_and_hits_resume(gateway, http, redis_private,
                                                                            lock_wait_s):
    config = make_config(cache={"enabled": True, "backend": "redis", "lock_wait_s": lock_wait_s},
                         redis={"url": redis_private.url, "timeout_s": 0.05, "pool_wait_s": 0.05})
    gw = await gateway(config)
    assert await x_cache(http, gw) == "MISS"
    assert await x_cache(http, gw) == "HIT"
    for outage, back in ((redis_private.pause, redis_private.resume), (redis_private.kill, redis_private.start)):
        outage()
        slowest = 0.0
        for i in range(8):  # the first few pay one timeout each, then the breaker skips Redis
            started = time.perf_counter()
            question = {**CHAT_BODY, "messages": [{"role": "user", "content": f"during the outage {i}"}]}
            assert await x_cache(http, gw, question) == "MISS"  # x_cache asserts the 200
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.5  # one per-command timeout (50 ms) plus a loaded machine, never a hang
        back()  # the same Redis again, or an empty one on the same port
        # The breaker's probe finds Redis back within about a second: stored and served again.
        assert (await misses_until_hit(http, gw))[-1] == "HIT"


async def test_store_semantics_ttl_size_cap_and_foreign_values(redis_server: RedisServer):
    from gateway.config import RedisConfig
    from gateway.redis_client import RedisConnections

    conns = RedisConnections(RedisConfig(url=redis_server.url, timeout_s=2))
    try:
        store = RedisStore(conns, None, max_bytes=1000)
        await store.set("k", b"value", 0.05)
        assert await store.get("k") == b"value"

        async def expired() -> bool:
            return await store.get("k") is None

        assert await eventually(expired, 2)  # expired by Redis
        await store.set("big", b"x" * 1000, 60)  # with its key over max_bytes: not stored
        assert await store.get("big") is None
        await store.set("z", b"y" * 990, 60)
        assert await store.get("z") == b"y" * 990  # compressed in Redis, whole again here
        await conns.client().set(KEY_PREFIX + "foreign", b"not ours")
        assert await store.get("foreign") is None  # an entry of another shape is a miss
    finally:
        await conns.close()


@pytest.mark.parametrize(("section", "path", "problem"), [
    ({"cache": {"enabled": True, "backend": "redis"}}, "cache.backend", "top-level 'redis' section"),
    ({"cache": {"backend": "redis", "redis_url": "http://h:1/0"}, "redis": {}}, "cache.redis_url", "redis://"),
    ({"cache": {"backend": "redis", "redis_url": "redis://h:port/0"}, "redis": {}}, "cache.redis_url", "port"),
])
def test_check_config_names_the_cache_fields(section, path, problem):
    with pytest.raises(ConfigError) as info:
        load_data(make_config(**section), {})
    assert any(p == path and problem in msg for p, msg in info.value.problems), info.value.problems


def test_the_cache_redis_password_is_a_redacted_secret():
    loaded = load_data(make_config(cache={"backend": "redis", "redis_url": "redis://:cache-pw-123@h:6379/0"},
                                   redis={}), {})
    assert "cache-pw-123" in loaded.config.secrets


async def test_flights_hand_the_leaders_value_to_early_and_late_followers():
    from plugins.cache_flight import Flights

    flights = Flights()
    assert flights.lead("k") and not flights.lead("k")
    early = asyncio.create_task(flights.follow("k"))
    await asyncio.sleep(0)
    assert flights.following == 1
    early.cancel()  # a follower whose client left does not cancel the flight for the others
    other = asyncio.create_task(flights.follow("k"))
    await asyncio.sleep(0)
    flights.land("k", b"answer")
    assert await other == b"answer"
    assert await flights.follow("k") == b"answer"  # after landing, before the store: no waiting
    flights.end("k")
    assert await flights.follow("k") is None and len(flights) == 0
    assert flights.lead("q")
    flights.land("q", None)  # nothing to share: followers go upstream themselves
    assert await flights.follow("q") is None
    flights.end("q")


async def test_an_unreachable_cache_redis_logs_once_without_its_password(gateway, http, caplog, redis_server):
    from tests.support import free_port

    closed = f"redis://:cache-pw-s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    gw = await gateway(make_config(cache={"enabled": True, "backend": "redis", "redis_url": closed},
                                   redis={"url": redis_server.url}))
    with caplog.at_level("INFO"):
        for _ in range(6):
            assert await x_cache(http, gw) == "MISS"  # answered 200 every time
    unreachable = [r for r in caplog.records if "store unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # one line per transition, not per request
    assert "cache-pw-s3cret" not in caplog.text


async def test_with_the_lock_identical_requests_across_processes_make_one_upstream_call(gateway, http, redis_server):
    stub: StubUpstream = await start_stub()
    try:
        provider = stub_provider("slow", stub.url, "sk-up", ["hang"], timeouts={"first_byte_s": 10})
        config = make_config(provider, cache={"enabled": True, "backend": "redis", "lock_wait_s": 10},
                             redis={"url": redis_server.url, "timeout_s": 2})
        gws = [await gateway(config) for _ in range(3)]  # three processes' worth of caches and flights
        body = {"model": "hang", "messages": [{"role": "user", "content": "once for all"}]}
        tasks = [asyncio.create_task(post(http, gw, body)) for gw in gws for _ in range(4)]
        states = [gw.app[cache.CACHE] for gw in gws]

        def all_waiting() -> bool:  # one upstream call; two leaders wait on the lock; 3 x 3 on flights
            return (len(stub.keys_seen) == 1 and sum(s.backend.waiting for s in states) == 2
                    and all(s.flights.following == 3 for s in states))

        assert await eventually(all_waiting)
        stub.release.set()
        results = await asyncio.gather(*tasks)
        assert [status for status, _, _ in results] == [200] * 12
        assert len(stub.keys_seen) == 1
        assert sorted(h["x-cache"] for _, h, _ in results) == ["HIT"] * 11 + ["MISS"]
        # The answer stored and the lock released with it.
        assert await eventually(lambda: redis_server.command("KEYS", KEY_PREFIX + "*:lock") == b"*0\r\n"
                                and redis_server.command("DBSIZE") == b":1\r\n"
                                and not any(s.backend.held for s in states))
    finally:
        await stub.close()


async def test_a_lock_whose_answer_is_not_stored_is_released_at_once(gateway, http, redis_server):
    stub: StubUpstream = await start_stub()
    try:
        provider = stub_provider("up", stub.url, "sk-up", ["status-500"])
        config = make_config(provider, cache={"enabled": True, "backend": "redis", "lock_wait_s": 30},
                             redis={"url": redis_server.url, "timeout_s": 2})
        a, b = await gateway(config), await gateway(config)
        body = {"model": "status-500", "messages": [{"role": "user", "content": "fails"}]}
        assert (await post(http, a, body))[0] >= 500  # held the lock, got an error: nothing to store
        assert await eventually(lambda: redis_server.command("DBSIZE") == b":0\r\n")  # lock released
        started = time.perf_counter()
        assert (await post(http, b, body))[0] >= 500
        assert time.perf_counter() - started < 5  # not the 30 s a stale lock would cost
    finally:
        await stub.close()
