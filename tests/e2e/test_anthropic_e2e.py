"""The anthropic adapter end to end: the official OpenAI SDK → a real gateway → the Anthropic
emulator (tests/emulators/anthropic.py), which validates what the adapter sends."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.support import drain

MODEL = "claude-sonnet-4-5"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def provider(url: str, **overrides: Any) -> dict[str, Any]:
    return {"name": "claude", "type": "anthropic", "base_url": url, "api_key": "sk-ant-test", "models": [MODEL],
            "health_check": {"enabled": False}, "retry": {"attempts": 0}, **overrides}


@pytest.fixture
def setup(gateway, emulator, sdk):
    """(emulator, SDK client) with a gateway in between; ``setup(**provider_overrides)``."""

    async def start(**overrides: Any):
        emu = await emulator("anthropic", api_key="sk-ant-test")
        return emu, sdk(await gateway(make_config(provider(emu.url, **overrides))))

    return start


async def test_chat_reaches_messages_api_and_returns_openai_shape(setup):
    emu, client = await setup()
    resp = await client.chat.completions.create(
        model=f"claude/{MODEL}", messages=[{"role": "user", "content": "hi there"}], temperature=1.5,
        stop="zzz", user="u-1", seed=7)
    assert resp.object == "chat.completion" and resp.id.startswith("msg_")
    assert resp.choices[0].message.content == "Hello from anthropic! You said: hi there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == MODEL
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (2, 7, 9)
    sent = emu.state.last_request
    assert sent.path == "/v1/messages"
    assert (sent.headers["x-api-key"], sent.headers["anthropic-version"]) == ("sk-ant-test", "2023-06-01")
    assert sent.json == {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": "hi there"}],
                         "temperature": 1.0, "stop_sequences": ["zzz"], "metadata": {"user_id": "u-1"}}


async def test_system_and_developer_messages_are_sent_as_top_level_system(setup):
    emu, client = await setup(options={"beta": ["feature-a"]})
    await client.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "again"},
    ])
    sent = emu.state.last_request
    assert sent.json["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
    assert sent.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                                  {"type": "text", "text": "again"}]}]
    assert sent.headers["anthropic-beta"] == "feature-a"


async def test_stream_assembles_the_same_text_and_reports_usage_when_asked(setup):
    emu, client = await setup()
    messages = [{"role": "user", "content": "stream this please"}]
    chunks = await drain(await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from anthropic! You said: stream this please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 3 + 8
    assert len({c.id for c in chunks}) == 1
    assert emu.state.last_request.json["stream"] is True
    plain = await drain(await client.chat.completions.create(model=MODEL, messages=messages, stream=True))
    assert all(c.choices and c.usage is None for c in plain)


@pytest.mark.parametrize(("fields", "text", "finish"), [
    ({"stop": ["anthropic"]}, "Hello from ", "stop"),
    ({"max_completion_tokens": 2}, "Hello from", "length"),
])
async def test_stop_sequences_and_max_tokens_map_to_finish_reasons(setup, fields, text, finish):
    _, client = await setup()
    resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], **fields)
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == (text, finish)


async def test_image_parts_reach_the_vendor_as_image_blocks(setup):
    emu, client = await setup()
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}])
    assert emu.state.last_request.json["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


async def test_tool_call_round_trip(setup):
    emu, client = await setup()
    question = {"role": "user", "content": "Weather in Paris?"}
    chunks = await drain(await client.chat.completions.create(
        model=MODEL, messages=[question], tools=[WEATHER_TOOL], tool_choice="required", stream=True))
    assert emu.state.last_request.json["tool_choice"] == {"type": "any"}
    assert emu.state.last_request.json["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += tc.id or ""
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert list(calls) == [0]
    call = calls[0]
    assert call["name"] == "get_weather" and call["id"].startswith("toolu_")
    assert json.loads(call["arguments"]) == {"city": "Weather in Paris?"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    preamble = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    function = {"name": call["name"], "arguments": call["arguments"]}
    follow_up = await client.chat.completions.create(model=MODEL, tools=[WEATHER_TOOL], messages=[
        question,
        {"role": "assistant", "content": preamble,
         "tool_calls": [{"id": call["id"], "type": "function", "function": function}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
    ])
    assert follow_up.choices[0].message.content == "Hello from anthropic! Tool said: 18C and sunny"
    sent = emu.state.last_request.json["messages"]
    assert sent[1]["content"][-1] == {"type": "tool_use", "id": call["id"], "name": "get_weather",
                                      "input": {"city": "Weather in Paris?"}}
    assert sent[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call["id"], "content": "18C and sunny"}]}


async def test_non_stream_tool_call_has_json_string_arguments(setup):
    _, client = await setup()
    resp = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Paris"}], tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, parallel_tool_calls=False)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}


async def test_legacy_completions_go_through_the_messages_api(setup):
    emu, client = await setup()
    resp = await client.completions.create(model=MODEL, prompt="say this", max_tokens=50)
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Hello from anthropic! You said: say this"
    assert resp.choices[0].finish_reason == "stop" and resp.usage.prompt_tokens == 2
    assert emu.state.last_request.json["messages"] == [{"role": "user", "content": "say this"}]
    chunks = await drain(await client.completions.create(
        model=MODEL, prompt="say this", stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"text_completion"}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == resp.choices[0].text
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens


async def test_embeddings_are_400_naming_the_provider(setup):
    emu, client = await setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.embeddings.create(model=MODEL, input="x")
    assert info.value.code == "unsupported_operation" and "'claude'" in info.value.message
    assert emu.state.requests == []


async def test_unsupported_n_is_400_before_any_upstream_call(setup):
    emu, client = await setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
    assert info.value.param == "n" and emu.state.requests == []


async def test_upstream_401_is_502_so_the_client_does_not_blame_its_own_key(setup):
    _, client = await setup(api_key="sk-ant-wrong")
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and info.value.code == "upstream_auth_error"
    assert "sk-ant" not in info.value.message


async def test_upstream_429_keeps_status_retry_after_and_ratelimit_headers(setup):
    emu, client = await setup()
    emu.state.script(Fault.status(429, "Number of request tokens has exceeded your rate limit", retry_after=12,
                                  headers={"anthropic-ratelimit-tokens-remaining": "0"}))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    headers = info.value.response.headers
    assert headers["retry-after"] == "12" and headers["anthropic-ratelimit-tokens-remaining"] == "0"
    assert "exceeded your rate limit" in info.value.message


async def test_upstream_529_is_503_overloaded_and_retried(setup):
    emu, client = await setup()
    emu.state.script(Fault.status(529))
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and info.value.code == "upstream_overloaded"

    emu, client = await setup(retry={"attempts": 1, "backoff_base_s": 0, "backoff_max_s": 0})
    emu.state.script(Fault.status(529))
    resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content.startswith("Hello from anthropic!")
    assert len(emu.state.requests) == 2


async def test_upstream_400_passes_through_with_the_vendor_message(setup):
    _, client = await setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert "max_tokens: Input should be greater than or equal to 1" in info.value.message


@pytest.mark.parametrize("fault,message", [
    (Fault.stream_error(after=2, message="Overloaded", error_type="overloaded_error"), "Overloaded"),
    (Fault.no_terminal(), "ended before its final event"),  # cut before message_stop
])
async def test_a_stream_that_breaks_midway_is_an_sdk_error(setup, fault, message):
    emu, client = await setup()
    emu.state.script(fault)
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError, match=message):
        await drain(stream)


async def test_models_listing_includes_the_vendor_models(setup):
    _, client = await setup()
    ids = [m.id async for m in client.models.list()]
    assert f"claude/{MODEL}" in ids and "claude/claude-haiku-4-5-20251001" in ids
