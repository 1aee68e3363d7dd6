"""Fault injection against the OpenAI emulator: each fault has its asserted outcome, nothing
hangs, no connection or task leaks, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest

from tests.conftest import MOCK_PROVIDER, make_config
from tests.emulators.base import Fault
from tests.support import chat_body, openai_provider, read_events

RETRY = {"attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more: connection refused


def chat_requests(emu) -> int:
    return sum(1 for r in emu.state.requests if r.path.endswith("/chat/completions"))


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retryable_status_is_retried_then_succeeds(gateway, emulator, http, status):
    emu = await emulator("openai")
    emu.state.script(Fault.status(status, "try again", retry_after=0.01))
    gw = await gateway(make_config(openai_provider(emu.url, retry=RETRY)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 200
    assert chat_requests(emu) == 2


@pytest.mark.parametrize("status,expected", [(429, 429), (500, 502), (503, 502), (400, 400), (404, 404)])
async def test_exhausted_or_client_errors_map_to_the_right_status(gateway, emulator, http, status, expected):
    emu = await emulator("openai")
    emu.state.script(*[Fault.status(status, "vendor says no") for _ in range(3)])
    gw = await gateway(make_config(openai_provider(emu.url, retry=RETRY)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == expected
        error = (await resp.json())["error"]
    assert "vendor says no" in error["message"]
    # Client errors are not retried: the same request would fail the same way.
    assert chat_requests(emu) == (1 if status in (400, 404) else 3)


async def test_long_retry_after_is_not_waited_for(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.status(429, "later", retry_after=3600))
    gw = await gateway(make_config(openai_provider(emu.url, retry=RETRY)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "3600"
    assert chat_requests(emu) == 1


async def test_connection_refused_falls_back_to_the_next_alias_target(gateway, http):
    dead = openai_provider(closed_port_url(), name="dead", retry=RETRY)
    gw = await gateway(make_config(dead, MOCK_PROVIDER,
                                   models=[{"name": "smart", "targets": ["dead/gpt-4o-mini", "mock/mock-1"]}]))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False, model="dead/gpt-4o-mini")) as r:
        assert r.status == 502 and (await r.json())["error"]["code"] == "upstream_connection_error"
    for stream in (False, True):
        async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=stream, model="smart")) as resp:
            assert resp.status == 200
            assert resp.headers["x-gateway-provider"] == "mock"
            await resp.read()


async def test_slow_first_byte_times_out_with_504(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.delay_first_byte(5))
    gw = await gateway(make_config(openai_provider(emu.url, timeouts={"first_byte_s": 0.3})))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 504
        assert (await resp.json())["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("fault", [Fault.bad_json(), Fault.html_error(502)])
async def test_malformed_upstream_bodies_become_502_envelopes(gateway, emulator, http, fault):
    emu = await emulator("openai")
    emu.state.script(fault)
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 502 and resp.content_type == "application/json"
        error = (await resp.json())["error"]
    assert "<html" not in error["message"].lower()


async def test_malformed_sse_mid_stream_becomes_an_error_event(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.bad_sse(after=2))
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body()) as resp:
        events = await read_events(resp)
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_protocol_error"


async def test_circuit_opens_and_alias_skips_the_open_provider(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(*[Fault.status(500, "down") for _ in range(9)])
    flaky = openai_provider(emu.url, name="flaky", retry=RETRY,
                            circuit_breaker={"consecutive_failures": 3, "open_s": 60})
    gw = await gateway(make_config(flaky, MOCK_PROVIDER,
                                   models=[{"name": "smart", "targets": ["flaky/gpt-4o-mini", "mock/mock-1"]}]))
    breaker = gw.gw.registry["flaky"].breaker
    for i in range(3):
        # Each request fails on flaky through its three attempts and the fallback serves it; it
        # still counts (once) against flaky, so that later requests learn to skip it.
        assert breaker.state == "closed", i
        async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False, model="smart")) as resp:
            assert resp.status == 200 and resp.headers["x-gateway-provider"] == "mock"
    assert breaker.state == "open" and chat_requests(emu) == 9
    for stream in (False, True):
        async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=stream, model="smart")) as resp:
            assert resp.status == 200 and resp.headers["x-gateway-provider"] == "mock"
            await resp.read()
    assert chat_requests(emu) == 9  # a healthy target exists: the open one is skipped, not tried
    async with http.get(gw.url + "/health/providers") as resp:
        states = {p["name"]: (p["circuit"], p["panic"]) for p in (await resp.json())["providers"]}
    assert states == {"flaky": ("open", False), "mock": ("closed", False)}


async def test_a_single_provider_route_never_answers_circuit_open(gateway, emulator, http):
    """Every target open: the request goes to the one that opened first ("panic") instead of a
    503, and /health/providers and /metrics say so."""
    emu = await emulator("openai")
    emu.state.script(Fault.status(500, "down"))
    gw = await gateway(make_config(openai_provider(emu.url, circuit_breaker={"consecutive_failures": 1})))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 502
    assert gw.gw.registry["oai"].breaker.state == "open"
    for stream in (False, True):
        async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=stream)) as resp:
            assert resp.status == 200
            await resp.read()
    assert chat_requests(emu) == 3
    async with http.get(gw.url + "/health/providers") as resp:
        oai = (await resp.json())["providers"][0]
    assert oai["circuit"] == "open" and oai["panic"] is True and oai["panic_requests"] == 2
    assert oai["last_panic"] > 0
    async with http.get(gw.url + "/metrics") as resp:
        assert 'llm_gateway_circuit_panic_total{provider="oai"} 2.0' in await resp.text()


async def test_new_user_sequence_429_then_500_through_retries_then_200(gateway, emulator, http):
    """Defaults and one openai provider: a request answered 429 through its retries, then one
    answered 500 through its retries, must not take the provider out: the next one is a 200."""
    emu = await emulator("openai")
    chat = "/chat/completions"  # the default health check must not take the scripted faults
    emu.state.script(*[Fault.status(429, "slow down", path=chat) for _ in range(3)],
                     *[Fault.status(500, "oops", path=chat) for _ in range(3)])
    provider = {"name": "oai", "type": "openai", "base_url": emu.url, "api_key": "test-key",
                "models": ["gpt-4o-mini"]}
    gw = await gateway(make_config(provider))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 429
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 502
    assert chat_requests(emu) == 6  # both went through their retries (2 by default)
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 200
    async with http.get(gw.url + "/health/providers") as resp:
        oai = (await resp.json())["providers"][0]
    assert oai["circuit"] == "closed" and oai["panic_requests"] == 0


async def test_two_hundred_concurrent_streams_with_a_tenth_failing(gateway, emulator, http):
    emu = await emulator("openai", chunk_delay=0.005)
    emu.state.script(*[Fault.drop_mid_stream(after=2) for _ in range(20)])
    # Scripted faults hit the first 20 streams in a row, which would (rightly) open the circuit;
    # this test is about isolation, so the breaker stays out of it.
    gw = await gateway(make_config(openai_provider(emu.url, circuit_breaker={"enabled": False})))

    async def one() -> bool:
        async with http.post(gw.v1 + "/chat/completions", json=chat_body()) as resp:
            events = await read_events(resp)
            assert resp.status == 200 and events, (resp.status, events)
        return events[-1] == b"[DONE]"

    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), 60)
    assert results.count(True) == 180 and results.count(False) == 20
    assert gw.gw.registry["oai"].in_flight == 0
    assert emu.state.active_streams == 0


async def test_active_health_check_reports_status_and_latency(gateway, emulator, http):
    emu = await emulator("openai")
    gw = await gateway(make_config(openai_provider(emu.url, health_check={"interval_s": 0.05})))
    for _ in range(100):
        if gw.gw.registry["oai"].health.status != "unknown":
            break
        await asyncio.sleep(0.02)
    async with http.get(gw.url + "/health/providers") as resp:
        oai = (await resp.json())["providers"][0]
    assert oai["status"] == "healthy" and oai["last_latency_ms"] > 0
    # The check spends no tokens: it only ever called the model listing.
    assert {r.path for r in emu.state.requests} == {"/v1/models"}
    emu.state.api_key = "rotated"
    for _ in range(100):
        if gw.gw.registry["oai"].health.status == "unhealthy":
            break
        await asyncio.sleep(0.02)
    async with http.get(gw.url + "/health/providers") as resp:
        oai = (await resp.json())["providers"][0]
    assert oai["status"] == "unhealthy" and oai["last_error"]


async def test_alias_moves_on_when_a_target_refuses_the_request_before_sending(gateway, emulator, http):
    emu = await emulator("perplexity")
    pplx = {"name": "pplx", "type": "perplexity", "base_url": emu.url, "api_key": "test-key", "models": ["sonar"],
            "health_check": {"enabled": False}}
    gw = await gateway(make_config(pplx, MOCK_PROVIDER,
                                   models=[{"name": "smart", "targets": ["pplx/sonar", "mock/mock-1"]}]))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False, model="smart", tools=tools)) as r:
        assert r.status == 200 and r.headers["x-gateway-provider"] == "mock"
    direct = chat_body(stream=False, model="pplx/sonar", tools=tools)
    async with http.post(gw.v1 + "/chat/completions", json=direct) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "tools"
    assert not [r for r in emu.state.requests if r.path.endswith("/chat/completions")]


async def test_vendor_429_without_retry_after_still_tells_the_client_when(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.status(429, "slow down"))
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"


async def test_an_exception_after_streaming_began_is_an_error_event_not_a_second_response(gateway, http):
    from gateway import hookimpl

    class BreaksMidStream:
        @hookimpl
        def gateway_wrap_stream(self, ctx):
            async def wrap(chunks):
                n = 0
                async for chunk in chunks:
                    n += 1
                    if n == 3:
                        raise ValueError("plugin bug")
                    yield chunk
            return wrap

    gw = await gateway()
    gw.gw.pm.register(BreaksMidStream())
    gw.gw.refresh_hooks()
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(model="mock-1")) as resp:
        assert resp.status == 200
        events = await read_events(resp)
    assert len(events) == 3 and orjson.loads(events[-1])["error"]["code"] == "internal_error"
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(model="mock-1", stream=False)) as resp:
        assert resp.status == 200  # and it keeps serving
