"""plugins.ratelimit over real sockets: the three levels, tokens with real usage, bounded waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.context import RequestContext
from gateway.operations import CHAT, EMBEDDINGS
from plugins import ratelimit
from plugins.prompt_estimate import asked_completion
from plugins.ratelimit_backend import REQUESTS, Charge, InProcessBackend, Limit
from tests.conftest import MOCK_PROVIDER, make_config

CHAT_BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
SECOND = {**MOCK_PROVIDER, "name": "second", "models": ["other-1"]}
LOREM = {**MOCK_PROVIDER, "name": "lorem", "models": ["lorem-1"], "options": {"reply": "lorem"}}


async def chat(http: Any, gw: Any, body: dict[str, Any] | None = None, **headers: str) -> tuple[int, Any, dict]:
    async with http.post(gw.v1 + "/chat/completions", json=body or CHAT_BODY, headers=headers) as resp:
        return resp.status, resp.headers, await resp.json()


def seconds(duration: str) -> float:
    """``250ms``, ``1.5s``, ``6m0s`` -> seconds."""
    if duration.endswith("ms"):
        return float(duration[:-2]) / 1000
    minutes, _, rest = duration[:-1].rpartition("m")
    return float(minutes or 0) * 60 + float(rest)


def assert_429(status: int, headers: Any, body: dict[str, Any], scope: str, kind: str) -> None:
    assert status == 429
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert scope in body["error"]["message"] and kind in body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
    for name in ("limit", "remaining", "reset"):
        assert f"x-ratelimit-{name}-{kind}" in headers


async def test_global_requests_per_minute(gateway, http):
    gw = await gateway(make_config(rate_limit={"requests_per_minute": 2}))
    status, headers, _ = await chat(http, gw)
    assert status == 200
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert seconds(headers["x-ratelimit-reset-requests"]) == pytest.approx(30, abs=1)
    assert (await chat(http, gw))[0] == 200
    status, headers, body = await chat(http, gw)
    assert_429(status, headers, body, "gateway", "requests")
    # A full bucket of 2 drains at 2/min: room for one more request in 30 s.
    assert headers["Retry-After"] == "30"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert seconds(headers["x-ratelimit-reset-requests"]) == pytest.approx(60, abs=1)
    assert "x-ratelimit-limit-tokens" not in headers


async def test_per_provider_limit_applies_to_that_provider_only(gateway, http):
    limited = {**MOCK_PROVIDER, "rate_limit": {"requests_per_minute": 1}}
    gw = await gateway(make_config(limited, SECOND))
    assert (await chat(http, gw))[0] == 200
    status, headers, body = await chat(http, gw, {**CHAT_BODY, "model": "mock/mock-1"})
    assert_429(status, headers, body, "provider 'mock'", "requests")
    for _ in range(3):
        status, headers, _ = await chat(http, gw, {**CHAT_BODY, "model": "other-1"})
        assert status == 200 and "x-ratelimit-limit-requests" not in headers


async def test_an_alias_spills_over_to_the_next_target_with_room(gateway, http):
    limited = {**MOCK_PROVIDER, "rate_limit": {"requests_per_minute": 1}}
    gw = await gateway(make_config(limited, SECOND, models=[{"name": "smart", "targets": ["mock/mock-1", "second/x"]}]))
    served = []
    for _ in range(3):
        status, headers, _ = await chat(http, gw, {**CHAT_BODY, "model": "smart"})
        assert status == 200
        served.append(headers["x-gateway-provider"])
    assert served == ["mock", "second", "second"]
    status, headers, body = await chat(http, gw, {**CHAT_BODY, "model": "mock/mock-1"})
    assert_429(status, headers, body, "provider 'mock'", "requests")  # no other target: refused


async def test_per_key_limit_by_principal_name(gateway, http):
    gw = await gateway(make_config(auth={"keys": [
        {"name": "team-a", "key": "sk-a-123", "rate_limit": {"requests_per_minute": 1}},
        {"name": "team-b", "key": "sk-b-123"},
    ]}))
    assert (await chat(http, gw, **{"x-api-key": "sk-a-123"}))[0] == 200
    status, headers, body = await chat(http, gw, **{"x-api-key": "sk-a-123"})
    assert_429(status, headers, body, "key 'team-a'", "requests")
    assert "sk-a-123" not in body["error"]["message"]
    for _ in range(3):
        assert (await chat(http, gw, **{"x-api-key": "sk-b-123"}))[0] == 200


async def test_every_level_must_have_room_and_a_rejection_charges_none(gateway, http):
    limited = {**MOCK_PROVIDER, "rate_limit": {"requests_per_minute": 1}}
    gw = await gateway(make_config(limited, SECOND, rate_limit={"requests_per_minute": 3}))
    assert (await chat(http, gw))[0] == 200  # global 1/3, mock 1/1
    for _ in range(3):  # rejected by the provider level: the global bucket is not charged
        assert (await chat(http, gw))[0] == 429
    assert (await chat(http, gw, {**CHAT_BODY, "model": "other-1"}))[0] == 200  # global 2/3
    status, headers, _ = await chat(http, gw, {**CHAT_BODY, "model": "other-1"})
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "0"
    status, headers, body = await chat(http, gw, {**CHAT_BODY, "model": "other-1"})
    assert_429(status, headers, body, "gateway", "requests")


async def test_tokens_per_minute_are_corrected_with_real_usage(gateway, http):
    gw = await gateway(make_config(LOREM, rate_limit={"tokens_per_minute": 50}))
    body = {**CHAT_BODY, "model": "lorem-1"}  # estimate: 1 prompt token; real: 1 + 64
    status, headers, reply = await chat(http, gw, body)
    assert status == 200 and reply["usage"]["total_tokens"] == 65
    assert headers["x-ratelimit-limit-tokens"] == "50"
    assert headers["x-ratelimit-remaining-tokens"] == "49"
    status, headers, err = await chat(http, gw, body)
    assert_429(status, headers, err, "gateway", "tokens")
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(headers["Retry-After"]) >= 19  # ~16 tokens over a 50/min bucket


async def test_an_overestimate_is_given_back(gateway, http):
    gw = await gateway(make_config(rate_limit={"tokens_per_minute": 100}))
    body = {**CHAT_BODY, "max_tokens": 60}  # estimate 61 each; real 1 + 3 ("You said: hi")
    remaining = []
    for _ in range(3):  # without the correction the second would already be over 100
        status, headers, reply = await chat(http, gw, body)
        assert status == 200 and reply["usage"]["total_tokens"] == 4
        remaining.append(int(headers["x-ratelimit-remaining-tokens"]))
    assert remaining[:2] == [39, 35]


async def test_a_cache_hit_counts_as_a_request_but_spends_no_tokens(gateway, http):
    gw = await gateway(make_config(LOREM, cache={"enabled": True},
                                   rate_limit={"tokens_per_minute": 70, "requests_per_minute": 4}))
    body = {**CHAT_BODY, "model": "lorem-1"}
    status, headers, _ = await chat(http, gw, body)
    assert status == 200 and headers["x-cache"] == "MISS"  # 65 real tokens
    for _ in range(3):  # a hit carries the stored usage (65), but nothing was spent upstream
        status, headers, _ = await chat(http, gw, body)
        assert status == 200 and headers["x-cache"] == "HIT"
    status, headers, err = await chat(http, gw, body)
    assert_429(status, headers, err, "gateway", "requests")


async def test_bounded_wait_admits_instead_of_rejecting(gateway, http):
    # 6000/min with a 10 ms window: a bucket of one request that empties every 10 ms.
    gw = await gateway(make_config(rate_limit={"requests_per_minute": 6000, "window_s": 0.01, "max_wait_s": 2}))
    started = time.monotonic()
    results = await asyncio.gather(*(chat(http, gw) for _ in range(5)))
    assert [r[0] for r in results] == [200] * 5
    assert time.monotonic() - started >= 0.035


async def test_wait_longer_than_max_wait_is_rejected_at_once(gateway, http):
    gw = await gateway(make_config(rate_limit={"requests_per_minute": 60, "window_s": 1, "max_wait_s": 0.05}))
    assert (await chat(http, gw))[0] == 200
    started = time.monotonic()
    status, headers, body = await chat(http, gw)
    assert_429(status, headers, body, "gateway", "requests")
    assert time.monotonic() - started < 0.5
    assert headers["Retry-After"] == "1"


async def test_disabled_ratelimit_does_nothing(gateway, http):
    gw = await gateway(make_config(rate_limit={"requests_per_minute": 1}, plugins={"disabled": ["ratelimit"]}))
    for _ in range(3):
        status, headers, _ = await chat(http, gw)
        assert status == 200 and "x-ratelimit-limit-requests" not in headers
    pm = gw.gw.pm
    for hook in (pm.hook.gateway_request_received, pm.hook.gateway_request_finished):
        assert "ratelimit" not in [impl.plugin_name for impl in hook.get_hookimpls()]
    assert ratelimit.RATE_LIMIT not in gw.app


async def test_no_limits_configured_keeps_no_state(gateway, http):
    gw = await gateway(make_config())
    assert ratelimit.RATE_LIMIT not in gw.app
    status, headers, _ = await chat(http, gw)
    assert status == 200 and not any(h.startswith("x-ratelimit") for h in headers)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_bucket_level_and_corrections():
    """A charge fills the bucket, a settle corrects it past its capacity or gives units back (never
    below empty), and the bucket drains at its rate."""
    clock = Clock()
    backend = InProcessBackend(clock)
    limit = Limit.of("a", "a", REQUESTS, 10, 60)  # capacity 10, 1 every 6 s
    assert (await backend.acquire([Charge(limit, 4)])).admitted
    assert backend.level(limit) == pytest.approx(4)
    backend.settle("r1", [(limit, 10)])
    assert backend.level(limit) == pytest.approx(14)
    assert not (await backend.acquire([Charge(limit, 1)])).admitted
    clock.now += 30  # five units drained
    assert backend.level(limit) == pytest.approx(9)
    backend.settle("r2", [(limit, -100)])
    assert backend.level(limit) == 0
    assert (await backend.acquire([Charge(limit, 10)])).admitted


async def test_in_process_backend_is_all_or_nothing():
    backend = InProcessBackend()
    a = Limit.of("a", "a", REQUESTS, 60, 60)
    b = Limit.of("b", "b", REQUESTS, 1, 60)
    assert (await backend.acquire([Charge(a, 1), Charge(b, 1)])).admitted
    decision = await backend.acquire([Charge(a, 1), Charge(b, 1)])
    assert not decision.admitted
    assert decision.retry_after == pytest.approx(60, abs=0.1)
    assert backend.level(a) == pytest.approx(1, abs=0.01)  # not charged by the rejection


def test_token_estimate_is_prompt_chars_over_four_plus_max_tokens():
    ctx = RequestContext(None, CHAT, "req")  # type: ignore[arg-type]
    ctx.body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x" * 40},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}},
    ]}], "max_tokens": 7, "n": 2}
    assert ratelimit.estimate_tokens(ctx) == 10 + 14
    ctx = RequestContext(None, EMBEDDINGS, "req")  # type: ignore[arg-type]
    ctx.body = {"input": [[1, 2, 3], "abcdefgh"]}
    assert ratelimit.estimate_tokens(ctx) == 5


@pytest.mark.parametrize(("body", "asked"), [
    ({}, (16, 1)), ({"max_tokens": 7, "n": 2}, (7, 2)), ({"max_completion_tokens": 9, "max_tokens": 7}, (9, 1)),
    ({"max_tokens": "7"}, None), ({"max_tokens": 7, "n": 1.5}, None)])
def test_the_completion_a_request_asks_room_for_is_read_once_for_both_estimates(body, asked):
    """One reading of max_completion_tokens / max_tokens / n for the limiter's token estimate and
    governance's budget reservation; a non-integer is None, and each estimate falls back its own
    way (the limiter to the prompt alone)."""
    assert asked_completion(body, 16) == asked
    ctx = RequestContext(None, CHAT, "req")  # type: ignore[arg-type]
    ctx.body = {"messages": [{"role": "user", "content": "x" * 8}], **body}
    completion, n = asked or (0, 1)
    assert ratelimit.estimate_tokens(ctx, 16) == 2 + completion * n


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (1.5, "1.5s"), (30, "30s"), (360, "6m0s")])
def test_reset_durations_use_openai_style(seconds, text):
    assert ratelimit.format_duration(seconds) == text


async def test_in_process_backend_views_show_each_bucket_after_its_charge():
    """The admitted views show each bucket after its charge, the refused ones before it, from one
    clock reading; the bucket then drains at its rate."""
    clock = Clock()
    backend = InProcessBackend(clock)
    a = Limit.of("a", "a", REQUESTS, 600, 60)  # capacity 600, 10 a second
    b = Limit.of("b", "b", REQUESTS, 60, 60)  # capacity 60, 1 a second
    decision = await backend.acquire([Charge(a, 5), Charge(b, 60)])
    assert decision.admitted
    view_a, view_b = decision.views
    assert view_a.remaining == pytest.approx(595) and view_a.reset_s == pytest.approx(0.5)
    assert view_b.remaining == pytest.approx(0) and view_a.wait_s == view_b.wait_s == 0
    refused = await backend.acquire([Charge(a, 1), Charge(b, 2)])
    assert not refused.admitted
    assert refused.views[0].wait_s == 0 and refused.views[1].wait_s == pytest.approx(2)
    assert backend.level(a) == pytest.approx(5)  # the refusal charged nothing
    clock.now += 0.3
    assert backend.level(a) == pytest.approx(2)
