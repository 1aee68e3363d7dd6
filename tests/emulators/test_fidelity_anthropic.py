"""The Anthropic emulator, driven by the official `anthropic` SDK (plus raw HTTP for header rules)."""

from __future__ import annotations

import aiohttp
import anthropic
import pytest

from tests.support import drain

from .base import Fault
from .fixtures import parse_sse

KEY = "sk-ant-emulator-0001"
MODEL = "claude-sonnet-4-6"  # not in the SDK's deprecated list (its DeprecationWarning is an error here)
USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS = [{"name": "get_weather", "description": "Get weather",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def sdk(url: str) -> anthropic.AsyncAnthropic:
    """anthropic SDK 2.x sends the key as `Authorization: Bearer` and its own anthropic-version; pin the
    documented `x-api-key` / 2023-06-01 headers that the emulator (and the gateway's adapter) use."""
    return anthropic.AsyncAnthropic(base_url=url, api_key=None, default_headers=HEADERS, max_retries=0)


@pytest.fixture
async def ant(emulator):
    emu = await emulator("anthropic", api_key=KEY)
    async with sdk(emu.url) as client:
        yield emu, client


async def test_create_message_text_and_usage(ant):
    emu, client = ant
    msg = await client.messages.create(model=MODEL, max_tokens=64, system="Be brief.", messages=USER)
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from anthropic! You said: Weather in Paris?"
    assert msg.stop_reason == "end_turn" and (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 8)
    sent = emu.state.last_request
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"


async def test_stream_helper_yields_text_and_final_message(ant):
    _, client = ant
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == final.content[0].text == "Hello from anthropic! You said: Weather in Paris?"
    assert final.usage.output_tokens == 8 and final.stop_reason == "end_turn"


async def test_stream_event_order_with_tool_use_block(ant):
    emu, _ = ant
    body = {"model": MODEL, "max_tokens": 64, "messages": USER, "tools": TOOLS, "stream": True}
    async with aiohttp.ClientSession() as http, http.post(f"{emu.url}/v1/messages", json=body,
                                                          headers=HEADERS) as r:
        events = parse_sse(await r.text())
    names = [e for e, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2
    assert sum('"input_json_delta"' in d for _, d in events) >= 2


async def test_tool_use_round_trip(ant):
    _, client = ant
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER, tools=TOOLS) as stream:
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use" and [b.type for b in first.content] == ["text", "tool_use"]
    use = first.content[1]
    assert use.name == "get_weather" and use.input == {"city": "Weather in Paris?"}
    assert first.usage.output_tokens == 4  # words of '{"city": "Weather in Paris?"}'
    history = [*USER, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]}]
    second = await client.messages.create(model=MODEL, max_tokens=64, messages=history, tools=TOOLS)
    assert second.content[0].text == "Hello from anthropic! Tool said: 18C"


async def test_max_tokens_and_stop_sequences(ant):
    _, client = ant
    msg = await client.messages.create(model=MODEL, max_tokens=2, messages=USER)
    assert msg.content[0].text == "Hello from" and msg.stop_reason == "max_tokens"
    msg = await client.messages.create(model=MODEL, max_tokens=64, messages=USER, stop_sequences=["!"])
    assert (msg.stop_reason, msg.stop_sequence, msg.content[0].text) == ("stop_sequence", "!", "Hello from anthropic")


@pytest.mark.parametrize(("messages", "needle"), [
    ([{"role": "system", "content": "x"}, *USER], 'Unexpected role "system"'),
    ([{"role": "assistant", "content": "x"}, *USER], "first message"),
    ([*USER, *USER], "alternate"),
    ([*USER, {"role": "assistant", "content": "ok"},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}],
     "unexpected `tool_use_id`"),
    ([*USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
      *USER], "without `tool_result`"),
])
async def test_invalid_conversations_are_rejected(ant, messages, needle):
    _, client = ant
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model=MODEL, max_tokens=64, messages=messages)
    assert needle in info.value.body["error"]["message"]
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "invalid_request_error"


async def test_header_and_body_rules_need_raw_http(ant):
    emu, _ = ant
    url, ok = f"{emu.url}/v1/messages", {"model": MODEL, "max_tokens": 8, "messages": USER}
    cases = [({"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}, ok, 401, "authentication_error"),
             ({"x-api-key": KEY}, ok, 400, "anthropic-version"),
             (HEADERS, {"model": MODEL, "messages": USER}, 400, "max_tokens: Field required"),
             (HEADERS, {**ok, "n": 2}, 400, "n: Extra inputs are not permitted"),
             (HEADERS, {**ok, "temperature": 1.5}, 400, "temperature")]
    async with aiohttp.ClientSession() as http:
        for headers, body, status, needle in cases:
            async with http.post(url, json=body, headers=headers) as r:
                assert r.status == status
                assert needle in await r.text()


async def test_overloaded_and_rate_limit_map_to_sdk_classes(ant):
    emu, client = ant
    emu.state.script(Fault.status(529), Fault.status(429, retry_after=3))
    with pytest.raises(anthropic.OverloadedError) as info:
        await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert info.value.response.headers["retry-after"] == "3"


async def test_mid_stream_error_event_raises(ant):
    emu, client = ant
    emu.state.script(Fault.stream_error(after=3, message="Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
            await drain(stream)
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_models_paginate_with_after_id(emulator):
    emu = await emulator("anthropic", api_key=KEY, known_models=["m-1", "m-2", "m-3"])
    async with sdk(emu.url) as client:
        ids = [m.id async for m in client.models.list(limit=2)]
    assert ids == ["m-1", "m-2", "m-3"]
    assert [r.query.get("after_id") for r in emu.state.requests] == [None, "m-2"]


async def test_bearer_key_only_accepted_when_enabled(emulator):
    strict = await emulator("anthropic", api_key=KEY)
    lenient = await emulator("anthropic", api_key=KEY, accept_bearer=True)
    for emu, ok in ((strict, False), (lenient, True)):
        async with anthropic.AsyncAnthropic(base_url=emu.url, api_key=KEY, max_retries=0) as client:
            if ok:
                await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
            else:
                with pytest.raises(anthropic.AuthenticationError):
                    await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
        assert emu.state.last_request.headers["authorization"] == f"Bearer {KEY}"
