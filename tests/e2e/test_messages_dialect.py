"""``/v1/messages`` end to end with the official anthropic SDK: translated through chat to the mock
provider and the openai and cohere emulators, and relayed natively to the anthropic emulator."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.emulators.fixtures import parse_sse

CLAUDE = "claude-sonnet-4-6"
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                            "properties": {"city": {"type": "string"}}, "required": ["city"]}}
OFF = {"health_check": {"enabled": False}, "retry": {"attempts": 0}}


def providers(anthropic_url: str, openai_url: str, cohere_url: str) -> list[dict[str, Any]]:
    return [
        {"name": "mock", "type": "mock", "models": ["mock-1"], **OFF},
        {"name": "claude", "type": "anthropic", "base_url": anthropic_url, "api_key": "sk-ant", "models": [CLAUDE],
         **OFF},
        {"name": "oai", "type": "openai", "base_url": openai_url, "api_key": "sk-oai", "models": ["gpt-4o-mini"],
         **OFF},
        {"name": "co", "type": "cohere", "base_url": cohere_url, "api_key": "co-key", "models": ["command-r"], **OFF},
    ]


@pytest.fixture
async def stack(gateway, emulator):
    """(gateway, {vendor: emulator}, anthropic SDK client)."""
    emus = {"anthropic": await emulator("anthropic", api_key="sk-ant"),
            "openai": await emulator("openai", api_key="sk-oai"),
            "cohere": await emulator("cohere", api_key="co-key")}
    config = make_config(*providers(emus["anthropic"].url, emus["openai"].url, emus["cohere"].url))
    gw = await gateway(config)
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="client-key", max_retries=0)
    yield gw, emus, client
    await client.close()


TRANSLATED = ["mock/mock-1", "oai/gpt-4o-mini", "co/command-r"]
ALL = [*TRANSLATED, f"claude/{CLAUDE}"]


@pytest.mark.parametrize("model", ALL)
async def test_create_returns_a_message(stack, model):
    _, _, client = stack
    msg = await client.messages.create(model=model, max_tokens=100, system="Be brief.",
                                       messages=[{"role": "user", "content": "hello there friend"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and "hello there friend" in msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg._request_id


@pytest.mark.parametrize("model", ALL)
async def test_stream_final_message_equals_streamed_text(stack, model):
    _, _, client = stack
    async with client.messages.stream(model=model, max_tokens=100,
                                      messages=[{"role": "user", "content": "one two three"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert final.content[0].text == text and "one two three" in text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["oai/gpt-4o-mini", "co/command-r", f"claude/{CLAUDE}"])
async def test_tool_use_and_tool_result_round_trip(stack, model):
    _, emus, client = stack
    question = [{"role": "user", "content": "Weather in Paris?"}]
    async with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=question) as stream:
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and "city" in call.input
    answer = await client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=[
        *question, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]}])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    assert "sunny, 21C" in answer.content[0].text  # the emulator answers with the tool's result
    if model.startswith("oai/"):
        sent = emus["openai"].state.last_request.json["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}
        assert sent[-2]["tool_calls"][0]["id"] == call.id


async def test_translated_requests_carry_no_native_only_hints(stack):
    _, emus, client = stack
    await client.messages.create(
        model="oai/gpt-4o-mini", max_tokens=50, tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
        system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cch=abc;"},
                {"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 1024}, metadata={"user_id": "u-7"},
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27"},
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "high"}})
    sent = emus["openai"].state.last_request
    assert "anthropic-beta" not in sent.headers
    raw = json.dumps(sent.json)
    for leaked in ("cache_control", "$schema", "billing-header", "thinking", "context_management", "effort"):
        assert leaked not in raw, leaked
    assert sent.json["messages"][0] == {"role": "system", "content": "You are helpful."}
    assert sent.json["tool_choice"] == "required" and sent.json["parallel_tool_calls"] is False
    assert sent.json["user"] == "u-7"


async def test_native_relay_forwards_headers_and_body(stack):
    _, emus, client = stack
    await client.messages.create(model=f"claude/{CLAUDE}", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                 extra_headers={"anthropic-beta": "a-1,b-2", "anthropic-version": "2023-06-01"})
    sent = emus["anthropic"].state.last_request
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant"
    assert sent.headers["anthropic-beta"] == "a-1,b-2" and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["model"] == CLAUDE and "client-key" not in json.dumps(dict(sent.headers))


async def test_server_tools_are_refused_on_translated_providers(stack):
    _, _, client = stack
    with pytest.raises(anthropic.BadRequestError) as err:
        await client.messages.create(model="oai/gpt-4o-mini", max_tokens=10,
                                     messages=[{"role": "user", "content": "x"}],
                                     tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "web_search" in err.value.body["error"]["message"]


async def test_errors_have_anthropic_envelope_and_sdk_classes(stack, http):
    gw, emus, client = stack
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    async with http.post(gw.url + "/v1/messages", json={"model": "mock-1", "messages": []}) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    emus["openai"].state.script(Fault.status(429, retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model="oai/gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "3"
    emus["openai"].state.script(Fault.status(503))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await client.messages.create(model="oai/gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"


async def test_mid_stream_failure_raises_while_iterating(stack):
    _, emus, client = stack
    emus["openai"].state.script(Fault.stream_error(after=2, message="boom"))
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(model="oai/gpt-4o-mini", max_tokens=50,
                                          messages=[{"role": "user", "content": "one two three four"}]) as stream:
            async for _ in stream:
                pass


async def test_stream_event_sequence(stack, http):
    gw, _, _ = stack
    body = {"model": "oai/gpt-4o-mini", "max_tokens": 100, "stream": True, "tools": [WEATHER],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    async with http.post(gw.url + "/v1/messages", json=body) as resp:
        events = parse_sse(await resp.text())
    names = [name for name, _ in events]
    assert all(json.loads(data)["type"] == name for name, data in events)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    starts = [json.loads(d)["index"] for n, d in events if n == "content_block_start"]
    assert starts == list(range(len(starts)))
    open_blocks: set[int] = set()
    for name, data in events:  # one block open at a time; deltas only to the open one
        index = json.loads(data).get("index")
        if name == "content_block_start":
            assert not open_blocks
            open_blocks.add(index)
        elif name == "content_block_delta":
            assert open_blocks == {index}
        elif name == "content_block_stop":
            open_blocks.remove(index)
    assert not open_blocks and names.count("message_delta") == 1 and names.count("message_stop") == 1
    fragments = [json.loads(d)["delta"]["partial_json"] for n, d in events if n == "content_block_delta"
                 and json.loads(d)["delta"]["type"] == "input_json_delta"]
    assert len(fragments) >= 2 and json.loads("".join(fragments)) == {"city": "Weather in Paris?"}


async def test_count_tokens_native_and_estimated(stack):
    _, _, client = stack
    messages = [{"role": "user", "content": "how many tokens are in this sentence"}]
    estimated = await client.messages.count_tokens(model="oai/gpt-4o-mini", messages=messages)
    reported = await client.messages.create(model="oai/gpt-4o-mini", max_tokens=5, messages=messages)
    assert estimated.input_tokens >= reported.usage.input_tokens
    beta = await client.beta.messages.count_tokens(model="oai/gpt-4o-mini", messages=messages)
    assert beta.input_tokens == estimated.input_tokens


async def test_models_list_in_anthropic_shape(stack):
    _, _, client = stack
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "mock/mock-1" in ids and all(m.type == "model" for m in page.data)


async def test_untranslatable_blocks_are_refused_translated_but_relayed_natively(stack):
    _, emus, client = stack
    block = {"type": "search_result", "source": "https://example.com/r", "title": "Result",
             "content": [{"type": "text", "text": "the answer is 42"}]}
    messages = [{"role": "user", "content": [block, {"type": "text", "text": "summarise this"}]}]
    with pytest.raises(anthropic.BadRequestError) as err:
        await client.messages.create(model="oai/gpt-4o-mini", max_tokens=10, messages=messages)
    assert "messages[0].content[0].type" in err.value.body["error"]["message"]
    msg = await client.messages.create(model=f"claude/{CLAUDE}", max_tokens=50, messages=messages)
    assert msg.stop_reason == "end_turn"
    assert emus["anthropic"].state.last_request.json["messages"][0]["content"][0] == block


@pytest.mark.parametrize("fault", [Fault.stream_error(after=2, message="Overloaded"), Fault.drop_mid_stream(after=2)])
async def test_native_stream_failure_reaches_the_sdk_as_an_anthropic_error(stack, http, fault):
    gw, emus, client = stack
    emus["anthropic"].state.script(fault)
    body = {"model": f"claude/{CLAUDE}", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "one two three four"}]}
    async with http.post(gw.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}) as resp:
        events = parse_sse(await resp.text())
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert json.loads(events[-1][1])["type"] == "error"
    emus["anthropic"].state.script(fault)
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(**{k: v for k, v in body.items() if k != "stream"}) as stream:
            async for _ in stream:
                pass


async def test_images_sampling_and_error_tool_results_are_translated(stack):
    _, emus, client = stack
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    await client.messages.create(
        model="oai/gpt-4o-mini", max_tokens=30, stop_sequences=["END"],
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},  # this SDK version has no such parameters
        tools=[WEATHER], messages=[
            {"role": "user", "content": [image, {"type": "text", "text": "what is this?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                 "content": [{"type": "text", "text": "city unknown"}]},
                {"type": "text", "text": "try again"}]}])
    sent = emus["openai"].state.last_request.json
    assert sent["messages"][0]["content"][0] == {"type": "image_url",
                                                 "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert sent["messages"][1]["tool_calls"][0] == {"id": "toolu_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: city unknown"}
    assert sent["messages"][3] == {"role": "user", "content": "try again"}
    assert (sent["temperature"], sent["top_p"], sent["stop"]) == (0.5, 0.9, ["END"]) and "top_k" not in sent
    await client.messages.create(model="co/command-r", max_tokens=30, extra_body={"top_k": 40},
                                 messages=[{"role": "user", "content": "hi"}])
    assert emus["cohere"].state.last_request.json["k"] == 40


@pytest.mark.parametrize("model", ["oai/gpt-4o-mini", f"claude/{CLAUDE}"])
async def test_beta_messages_with_query_string(stack, model):
    _, _, client = stack
    msg = await client.beta.messages.create(model=model, max_tokens=20, betas=["context-management-2025-06-27"],
                                            messages=[{"role": "user", "content": "beta hello"}])
    assert "beta hello" in msg.content[0].text
