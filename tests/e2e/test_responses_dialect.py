"""``/v1/responses`` end to end with the official openai SDK, translated through chat to the mock
provider and the openai (native relay switched off), anthropic and cohere emulators."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.emulators.fixtures import parse_sse

OFF = {"health_check": {"enabled": False}, "retry": {"attempts": 0}}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
MODELS = ["mock/mock-1", "oai/gpt-4o-mini", "claude/claude-sonnet-4-6", "co/command-r"]
TOOL_MODELS = MODELS[1:]


def providers(emus: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "mock", "type": "mock", "models": ["mock-1"], **OFF},
        # The openai provider would relay /responses natively: switched off to test translation.
        {"name": "oai", "type": "openai", "base_url": emus["openai"].url, "api_key": "sk-oai",
         "models": ["gpt-4o-mini"], "native_dialects": [], **OFF},
        {"name": "claude", "type": "anthropic", "base_url": emus["anthropic"].url, "api_key": "sk-ant",
         "models": ["claude-sonnet-4-6"], **OFF},
        {"name": "co", "type": "cohere", "base_url": emus["cohere"].url, "api_key": "co-key",
         "models": ["command-r"], **OFF},
    ]


@pytest.fixture
async def stack(gateway, emulator, sdk):
    emus = {"openai": await emulator("openai", api_key="sk-oai"),
            "anthropic": await emulator("anthropic", api_key="sk-ant"),
            "cohere": await emulator("cohere", api_key="co-key")}
    gw = await gateway(make_config(*providers(emus)))
    return gw, emus, sdk(gw)


@pytest.mark.parametrize("model", MODELS)
async def test_create_returns_a_response(stack, model):
    _, _, client = stack
    resp = await client.responses.create(model=model, instructions="Be brief.", input="hello there friend")
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert "hello there friend" in resp.output_text
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.store is False


@pytest.mark.parametrize("model", MODELS)
async def test_stream_final_response_equals_streamed_text(stack, model):
    _, _, client = stack
    deltas = []
    async with client.responses.stream(model=model, input="one two three") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert final.output_text == "".join(deltas) and "one two three" in final.output_text
    assert final.status == "completed" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_function_call_round_trip(stack, model):
    _, emus, client = stack
    async with client.responses.stream(model=model, input="Weather in Paris?", tools=[WEATHER]) as stream:
        first = await stream.get_final_response()
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Weather in Paris?"}
    answer = await client.responses.create(model=model, tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert "sunny, 21C" in answer.output_text
    if model.startswith("oai/"):
        sent = emus["openai"].state.last_request.json["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21C"}


async def test_stream_event_sequence(stack, http):
    gw, _, _ = stack
    body = {"model": "oai/gpt-4o-mini", "stream": True, "input": "Weather in Paris?", "tools": [WEATHER]}
    async with http.post(gw.v1 + "/responses", json=body) as resp:
        events = [(name, json.loads(data)) for name, data in parse_sse(await resp.text())]
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    assert all(name == e["type"] for name, e in events)
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"
    announced: set[int] = set()
    for name, e in events:
        if name == "response.output_item.added":
            announced.add(e["output_index"])
        elif "output_index" in e:
            assert e["output_index"] in announced, name
    args = "".join(e["delta"] for n, e in events if n == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Weather in Paris?"}


async def test_length_ends_incomplete(stack):
    _, _, client = stack
    resp = await client.responses.create(model="oai/gpt-4o-mini", input="one two three four five six",
                                         max_output_tokens=2)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    async with client.responses.stream(model="oai/gpt-4o-mini", input="one two three four five six",
                                       max_output_tokens=2) as stream:
        events = [event async for event in stream]
    # As from OpenAI itself: the SDK's get_final_response() wants response.completed, so the
    # terminal event is read instead.
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("field, value", [("previous_response_id", "resp_1"), ("store", True),
                                          ("background", True)])
async def test_state_fields_are_refused_when_translated(stack, field, value):
    _, _, client = stack
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model="oai/gpt-4o-mini", input="x", **{field: value})
    assert err.value.param == field


async def test_builtin_tools_are_refused_when_translated(stack):
    _, _, client = stack
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model="claude/claude-sonnet-4-6", input="x", tools=[{"type": "web_search"}])
    assert err.value.param == "tools[0].type"


async def test_errors_and_mid_stream_failure(stack):
    _, emus, client = stack
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="nope", input="x")
    emus["openai"].state.script(Fault.status(429, retry_after=2))
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model="oai/gpt-4o-mini", input="x")
    emus["openai"].state.script(Fault.stream_error(after=2, message="boom"))
    seen = []
    async with client.responses.stream(model="oai/gpt-4o-mini", input="one two three four") as stream:
        async for event in stream:
            seen.append(event.type)
    assert seen[-1] == "response.failed"


async def test_uploaded_file_ids_are_refused_when_translated(stack):
    _, _, client = stack
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model="oai/gpt-4o-mini", input=[{"role": "user", "content": [
            {"type": "input_file", "file_id": "file-123"}, {"type": "input_text", "text": "read it"}]}])
    assert err.value.param == "input[0].content[0]"


@pytest.fixture
async def native(gateway, emulator, sdk):
    """Providers that serve Responses themselves, each in front of its emulator."""
    emus = {v: await emulator(v, api_key="sk-up") for v in ("openai", "grok", "openrouter")}
    gw = await gateway(make_config(*[{"name": v, "type": v, "base_url": e.url, "api_key": "sk-up",
                                      "models": ["gpt-4o-mini"], **OFF} for v, e in emus.items()]))
    return emus, sdk(gw)


@pytest.mark.parametrize("vendor", ["openai", "grok", "openrouter"])
async def test_native_responses_round_trip(native, vendor):
    emus, client = native
    model = f"{vendor}/gpt-4o-mini"
    created = await client.responses.create(model=model, input="hello there", store=True,
                                            previous_response_id="resp_earlier")
    assert created.id.startswith("resp_emu") and "hello there" in created.output_text
    sent = emus[vendor].state.last_request
    assert sent.path.endswith("/responses") and sent.json["previous_response_id"] == "resp_earlier"
    async with client.responses.stream(model=model, input="Weather in Paris?", tools=[WEATHER]) as stream:
        first = await stream.get_final_response()
    call = next(item for item in first.output if item.type == "function_call")
    answer = await client.responses.create(model=model, tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert answer.output_text == f"Hello from {vendor}! Tool said: sunny"
    assert all(r.path.endswith("/responses") for r in emus[vendor].state.requests)
