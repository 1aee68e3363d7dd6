"""The gateway's plugins apply to the dialect endpoints as to chat: client keys (``x-api-key`` or
Bearer), rate limits, the response cache, keep-alive pings; errors in each dialect's envelope."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

from tests.conftest import MOCK_PROVIDER, make_config
from tests.emulators.fixtures import parse_sse
from tests.support import openai_provider

KEY = "gw-client-key-1"
ASK = {"model": "mock-1", "max_tokens": 20, "messages": [{"role": "user", "content": "one two"}]}


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
async def test_client_key_in_either_header(gateway, http, header):
    gw = await gateway(make_config(auth={"keys": [{"name": "a", "key": KEY}]}))
    value = KEY if header == "x-api-key" else f"Bearer {KEY}"
    async with http.post(gw.url + "/v1/messages", json=ASK, headers={header: value}) as resp:
        assert resp.status == 200 and (await resp.json())["type"] == "message"
    async with http.post(gw.url + "/v1/messages", json=ASK, headers={header: "wrong"}) as resp:
        body = await resp.json()
    assert resp.status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert "wrong" not in str(body)


async def test_sdks_map_auth_failures_to_their_classes(gateway):
    gw = await gateway(make_config(auth={"keys": [{"name": "a", "key": KEY}]}))
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="bad", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(**ASK)
    async with openai.AsyncOpenAI(base_url=gw.v1, api_key="bad", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.responses.create(model="mock-1", input="x")


async def test_rate_limit_answers_in_the_dialect_envelope(gateway):
    gw = await gateway(make_config(rate_limit={"requests_per_minute": 1}))
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
        await client.messages.create(**ASK)
        with pytest.raises(anthropic.RateLimitError) as err:
            await client.messages.create(**ASK)
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert int(err.value.response.headers["retry-after"]) >= 1


async def test_cache_serves_a_repeated_message_in_anthropic_shape(gateway, http):
    gw = await gateway(make_config(cache={"enabled": True}))
    async with http.post(gw.url + "/v1/messages", json=ASK) as first:
        assert first.headers["x-cache"] == "MISS"
        one = await first.json()
    async with http.post(gw.url + "/v1/messages", json=ASK) as second:
        assert second.headers["x-cache"] == "HIT"
        two = await second.json()
    assert two["type"] == "message" and two["content"] == one["content"]


async def test_slow_stream_gets_anthropic_ping_events(gateway, http):
    slow = {**MOCK_PROVIDER, "options": {"reply": "echo", "chunk_delay_s": 0.3}}
    gw = await gateway(make_config(slow, server={"sse_ping_interval_s": 0.1}))
    async with http.post(gw.url + "/v1/messages", json={**ASK, "stream": True}) as resp:
        events = parse_sse(await resp.text(), comments=True)
    names = [name for name, _ in events]
    assert "ping" in names and "comment" not in names
    assert names[0] == "message_start" and names[-1] == "message_stop"


async def test_models_list_and_its_auth_error_in_anthropic_shape(gateway):
    gw = await gateway(make_config(auth={"keys": [{"name": "a", "key": KEY}]}))
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=KEY, max_retries=0) as client:
        page = await client.models.list()
        assert [m.id for m in page.data][:1] == ["mock/mock-1"] and page.data[0].type == "model"
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="wrong", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as err:
            await client.models.list()
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "authentication_error"


BAD_MESSAGES = [
    b"not json", b"[1, 2]", b'{"model": "mock-1"}', b'{"model": "mock-1", "max_tokens": 5, "messages": "hi"}',
    b'{"model": "mock-1", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "mock-1", "max_tokens": 5, "messages": ["x"]}',
    b'{"model": "mock-1", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}',
    b'{"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}',
    b'{"model": "mock-1", "max_tokens": 5, "system": 5, "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "mock-1", "max_tokens": 5, "tools": [{"name": 1}], "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]}',
    b'{"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}',
]
BAD_RESPONSES = [
    b"not json", b'{"model": "mock-1"}', b'{"model": "mock-1", "input": 5}', b'{"model": "mock-1", "input": [5]}',
    b'{"model": "mock-1", "input": [{"role": "robot", "content": "x"}]}',
    b'{"model": "mock-1", "input": [{"role": "user", "content": 5}]}',
    b'{"model": "mock-1", "input": "x", "tools": [{"type": "code_interpreter"}]}',
]


@pytest.mark.parametrize("body", BAD_MESSAGES)
async def test_bad_messages_bodies_get_anthropic_400s(gateway, http, body):
    gw = await gateway()
    async with http.post(gw.url + "/v1/messages", data=body, headers={"content-type": "application/json"}) as resp:
        answer = await resp.json()
    assert resp.status == 400 and answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error" and answer["error"]["message"]


@pytest.mark.parametrize("body", BAD_RESPONSES)
async def test_bad_responses_bodies_get_openai_400s(gateway, http, body):
    gw = await gateway()
    async with http.post(gw.v1 + "/responses", data=body, headers={"content-type": "application/json"}) as resp:
        answer = await resp.json()
    assert resp.status == 400 and answer["error"]["type"] == "invalid_request_error" and answer["error"]["message"]


async def test_count_tokens_honours_key_models_and_is_metered(gateway, http):
    other = {**MOCK_PROVIDER, "name": "other", "models": ["other-1"]}
    keys = [{"name": "a", "key": KEY, "models": ["mock/*"]}]
    gw = await gateway(make_config(MOCK_PROVIDER, other, auth={"keys": keys}))
    ask = {"model": "mock-1", "messages": [{"role": "user", "content": "count me"}]}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with http.post(gw.url + "/v1/messages/count_tokens", json=ask, headers=headers) as resp:
        assert resp.status == 200 and (await resp.json())["input_tokens"] > 0
    async with http.post(gw.url + "/v1/messages/count_tokens", json={**ask, "model": "other-1"},
                         headers=headers) as resp:
        denied = await resp.json()
    assert resp.status == 403 and denied["error"]["type"] == "permission_error"
    async with http.get(gw.url + "/metrics") as resp:
        assert 'operation="count_tokens"' in await resp.text()


@pytest.mark.parametrize("path, body, first_event, last_event", [
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 50, "stream": True,
                      "messages": [{"role": "user", "content": "one two three"}]}, "message_start", "message_stop"),
    ("/v1/responses", {"model": "gpt-4o-mini", "stream": True, "input": "one two three"},
     "response.created", "response.completed"),
])
async def test_translated_stream_is_not_held_back(gateway, emulator, http, path, body, first_event, last_event):
    """The upstream pauses after its first event until released: the client already has the
    dialect's first event, so the translation waited for nothing."""
    emu = await emulator("openai", release=asyncio.Event())
    gw = await gateway(make_config(openai_provider(emu.url, native_dialects=[])))
    async with http.post(gw.url + path, json=body) as resp:
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert first.startswith(b"event: " + first_event.encode())
        assert emu.state.streams_closed == 0  # upstream still mid-stream
        emu.state.release.set()
        rest = await resp.read()
    assert parse_sse(rest.decode())[-1][0] == last_event
