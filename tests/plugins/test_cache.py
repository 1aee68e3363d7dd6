"""plugins.cache over real sockets: MISS then HIT, bypasses, TTL, LRU bounds, replay as a stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from plugins import cache
from tests.conftest import make_config

CHAT_BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hello cache"}]}
ON = {"enabled": True}


async def post(http: Any, gw: Any, body: dict[str, Any] | None = None, path: str = "/chat/completions",
               **headers: str) -> tuple[int, Any, dict[str, Any]]:
    async with http.post(gw.v1 + path, json=body or CHAT_BODY, headers=headers) as resp:
        return resp.status, resp.headers, await resp.json()


async def x_cache(http: Any, gw: Any, body: dict[str, Any] | None = None, **headers: str) -> str:
    status, resp_headers, _ = await post(http, gw, body, **headers)
    assert status == 200
    return resp_headers.get("x-cache", "")


async def test_miss_then_hit_with_an_identical_body(gateway, http):
    gw = await gateway(make_config(cache=ON))
    _, headers, first = await post(http, gw)
    assert headers["x-cache"] == "MISS"
    _, headers, second = await post(http, gw)
    assert headers["x-cache"] == "HIT"
    assert headers["x-gateway-provider"] == "mock"  # who produced the stored answer
    assert second == first  # the stored answer, id included


async def test_key_ignores_delivery_fields_and_key_order(gateway, http):
    gw = await gateway(make_config(cache=ON))
    assert await x_cache(http, gw, {**CHAT_BODY, "user": "alice", "temperature": 0}) == "MISS"
    reordered = {"temperature": 0, "messages": CHAT_BODY["messages"], "model": "mock-1", "user": "bob"}
    assert await x_cache(http, gw, reordered) == "HIT"


@pytest.mark.parametrize("change", [
    {"messages": [{"role": "user", "content": "something else"}]},
    {"temperature": 1},
    {"model": "mock/mock-1", "temperature": 0},  # same upstream, different body
])
async def test_a_different_body_misses(gateway, http, change):
    gw = await gateway(make_config(cache=ON))
    assert await x_cache(http, gw, {**CHAT_BODY, "temperature": 0}) == "MISS"
    assert await x_cache(http, gw, {**CHAT_BODY, **change}) == "MISS"


async def test_no_cache_skips_the_lookup_but_stores_the_fresh_answer(gateway, http):
    gw = await gateway(make_config(cache=ON))
    _, _, first = await post(http, gw)
    _, headers, fresh = await post(http, gw, **{"Cache-Control": "no-cache"})
    assert headers["x-cache"] == "MISS" and fresh["id"] != first["id"]
    _, headers, again = await post(http, gw)
    assert headers["x-cache"] == "HIT" and again["id"] == fresh["id"]


async def test_no_store_skips_lookup_and_store(gateway, http):
    gw = await gateway(make_config(cache=ON))
    assert await x_cache(http, gw, **{"Cache-Control": "max-age=0, No-Store"}) == "MISS"
    assert await x_cache(http, gw) == "MISS"
    assert await x_cache(http, gw, **{"Cache-Control": "no-store"}) == "MISS"
    assert await x_cache(http, gw) == "HIT"


async def test_entries_expire_after_ttl(gateway, http):
    gw = await gateway(make_config(cache={"enabled": True, "ttl_s": 5}))
    now = [1000.0]
    gw.app[cache.CACHE].backend.clock = lambda: now[0]
    assert await x_cache(http, gw) == "MISS"
    now[0] += 4.9
    assert await x_cache(http, gw) == "HIT"
    now[0] += 0.1
    assert await x_cache(http, gw) == "MISS"
    assert await x_cache(http, gw) == "HIT"


def body_n(i: int) -> dict[str, Any]:
    return {**CHAT_BODY, "messages": [{"role": "user", "content": f"question {i}"}]}


async def test_lru_evicts_the_least_recently_used_entry(gateway, http):
    gw = await gateway(make_config(cache={"enabled": True, "max_entries": 2}))
    assert await x_cache(http, gw, body_n(1)) == "MISS"
    assert await x_cache(http, gw, body_n(2)) == "MISS"
    assert await x_cache(http, gw, body_n(1)) == "HIT"  # 1 is now the most recent
    assert await x_cache(http, gw, body_n(3)) == "MISS"  # evicts 2
    assert await x_cache(http, gw, body_n(1)) == "HIT"
    assert await x_cache(http, gw, body_n(2)) == "MISS"
    assert len(gw.app[cache.CACHE].backend) == 2


async def test_lru_is_bounded_by_bytes():
    lru = cache.InProcessLRU(max_entries=100, max_bytes=100)
    await lru.set("a", b"x" * 39, 60)  # 40 bytes with its key
    await lru.set("b", b"x" * 39, 60)
    assert lru.bytes == 80
    assert await lru.get("a") is not None  # a is now the most recent
    await lru.set("c", b"x" * 39, 60)  # 120 > 100: evicts b
    assert "b" not in lru and "a" in lru and "c" in lru and lru.bytes == 80
    await lru.set("d", b"x" * 200, 60)  # larger than the whole cache: not stored, nothing evicted
    assert "d" not in lru and len(lru) == 2
    await lru.set("a", b"y" * 9, 60)  # replacing an entry re-counts its size
    assert lru.bytes == 50 and await lru.get("a") == b"y" * 9


async def test_a_response_larger_than_max_bytes_is_never_stored(gateway, http):
    gw = await gateway(make_config(cache={"enabled": True, "max_bytes": 64}))
    assert await x_cache(http, gw) == "MISS"
    assert await x_cache(http, gw) == "MISS"


def sse_events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


async def test_a_cached_answer_is_replayed_to_a_streaming_client(gateway, http):
    gw = await gateway(make_config(cache=ON))
    _, _, stored = await post(http, gw)
    stream_body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(gw.v1 + "/chat/completions", json=stream_body) as resp:
        assert resp.status == 200
        assert resp.headers["x-cache"] == "HIT"
        assert resp.content_type == "text/event-stream"
        events = sse_events(await resp.text())
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == stored["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"] == stored["usage"]


async def test_streamed_answers_are_not_stored(gateway, http):
    gw = await gateway(make_config(cache=ON))
    async with http.post(gw.v1 + "/chat/completions", json={**CHAT_BODY, "stream": True}) as resp:
        assert resp.headers["x-cache"] == "MISS"
        assert sse_events(await resp.text())[-1] == "[DONE]"
    assert await x_cache(http, gw) == "MISS"


@pytest.mark.parametrize(("path", "body"), [
    ("/completions", {"model": "mock-1", "prompt": "complete me"}),
    ("/embeddings", {"model": "mock-embed", "input": ["a", "b"]}),
])
async def test_completions_and_embeddings_are_cached(gateway, http, path, body):
    gw = await gateway(make_config(cache=ON))
    _, headers, first = await post(http, gw, body, path)
    assert headers["x-cache"] == "MISS"
    _, headers, second = await post(http, gw, body, path)
    assert headers["x-cache"] == "HIT" and second == first


@pytest.mark.parametrize(("response", "expected"), [
    ({"choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]}, True),
    ({"choices": [{"finish_reason": "tool_calls"}]}, True),
    ({"choices": [{"finish_reason": "content_filter"}]}, False),
    ({"choices": [{"finish_reason": "stop"}, {"finish_reason": None}]}, False),
    ({"choices": []}, False),
    ({"error": {"message": "x"}, "choices": [{"finish_reason": "stop"}]}, False),
    ({"object": "list", "data": []}, True),
    ({"object": "list"}, False),
])
def test_only_complete_answers_are_cacheable(response, expected):
    assert cache.cacheable(response) is expected  # re-exported from plugins.cache_keys


async def test_a_hit_still_needs_a_key_and_counts_against_rate_limits(gateway, http):
    gw = await gateway(make_config(cache=ON, auth={"keys": [{"name": "a", "key": "sk-a-123"}]},
                                   rate_limit={"requests_per_minute": 3}))
    key = {"x-api-key": "sk-a-123"}
    assert await x_cache(http, gw, **key) == "MISS"
    assert await x_cache(http, gw, **key) == "HIT"
    assert (await post(http, gw))[0] == 401
    assert (await post(http, gw, **{"x-api-key": "sk-wrong"}))[0] == 401
    assert await x_cache(http, gw, **key) == "HIT"
    assert (await post(http, gw, **key))[0] == 429


async def test_cache_is_off_by_default(gateway, http):
    gw = await gateway(make_config())
    assert cache.CACHE not in gw.app
    assert await x_cache(http, gw) == ""
    assert await x_cache(http, gw) == ""


async def test_disabled_cache_plugin_is_not_on_the_request_path(gateway, http):
    gw = await gateway(make_config(cache=ON, plugins={"disabled": ["cache"]}))
    pm = gw.gw.pm
    for hook in (pm.hook.gateway_before_upstream, pm.hook.gateway_response):
        assert "cache" not in [impl.plugin_name for impl in hook.get_hookimpls()]
    assert cache.CACHE not in gw.app
    assert await x_cache(http, gw) == ""
    assert await x_cache(http, gw) == ""
