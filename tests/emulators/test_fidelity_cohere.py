"""The Cohere v2 emulator, driven by the official `cohere` SDK (plus raw HTTP for what the SDK forbids)."""

from __future__ import annotations

import json

import aiohttp
import cohere
import pytest

from .base import Fault
from .cohere import PREAMBLE_TOKENS
from .replies import embedding, unpack_floats

KEY = "co-emulator-0001"
MODEL = "command-a-03-2025"
USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture
async def co(emulator):
    emu = await emulator("cohere", api_key=KEY)
    async with cohere.AsyncClientV2(api_key=KEY, base_url=emu.url, max_retries=0) as client:
        yield emu, client


async def test_chat_reply_usage_and_sampling_fields(co):
    emu, client = co
    resp = await client.chat(model=MODEL, messages=USER, p=0.5, k=10, max_tokens=64)
    assert resp.finish_reason == "COMPLETE"
    assert resp.message.content[0].text == "Hello from cohere! You said: Weather in Paris?"
    assert (resp.usage.billed_units.input_tokens, resp.usage.billed_units.output_tokens) == (3, 8)
    assert resp.usage.tokens.input_tokens == 3 + PREAMBLE_TOKENS
    sent = emu.state.last_request
    assert sent.path == "/v2/chat" and sent.headers["authorization"] == f"Bearer {KEY}"
    assert (sent.json["p"], sent.json["k"], sent.json["stream"]) == (0.5, 10, False)


async def test_chat_stream_event_sequence(co):
    _, client = co
    events = [e async for e in client.chat_stream(model=MODEL, messages=USER)]
    types = [e.type for e in events]
    assert types[:2] == ["message-start", "content-start"] and types[-2:] == ["content-end", "message-end"]
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == "Hello from cohere! You said: Weather in Paris?"
    assert events[-1].delta.finish_reason == "COMPLETE" and events[-1].delta.usage.billed_units.output_tokens == 8


async def test_stop_sequences_and_max_tokens(co):
    _, client = co
    resp = await client.chat(model=MODEL, messages=USER, stop_sequences=["!"])
    assert (resp.finish_reason, resp.message.content[0].text) == ("STOP_SEQUENCE", "Hello from cohere")
    resp = await client.chat(model=MODEL, messages=USER, max_tokens=1)
    assert (resp.finish_reason, resp.message.content[0].text) == ("MAX_TOKENS", "Hello")


async def test_tool_call_plain_and_streamed(co):
    _, client = co
    resp = await client.chat(model=MODEL, messages=USER, tools=TOOLS)
    assert resp.finish_reason == "TOOL_CALL" and resp.message.tool_plan == "I will call get_weather."
    call = resp.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Weather in Paris?"}
    events = [e async for e in client.chat_stream(model=MODEL, messages=USER, tools=TOOLS)]
    types = [e.type for e in events]
    assert types[0] == "message-start" and types[1] == "tool-plan-delta"
    assert types.count("tool-call-delta") >= 2 and types[-2:] == ["tool-call-end", "message-end"]
    start = next(e for e in events if e.type == "tool-call-start").delta.message.tool_calls
    args = "".join(e.delta.message.tool_calls.function.arguments for e in events if e.type == "tool-call-delta")
    assert start.function.name == "get_weather" and json.loads(args) == {"city": "Weather in Paris?"}
    assert events[-1].delta.finish_reason == "TOOL_CALL"
    history = [*USER, {"role": "assistant", "tool_plan": resp.message.tool_plan,
                       "tool_calls": [call.model_dump(exclude_none=True)]},
               {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    final = await client.chat(model=MODEL, messages=history, tools=TOOLS)
    assert final.message.content[0].text == "Hello from cohere! Tool said: 18C"


async def test_mid_stream_error_is_a_message_end_with_error(co):
    emu, client = co
    emu.state.script(Fault.stream_error(after=2, message="internal model failure"))
    events = [e async for e in client.chat_stream(model=MODEL, messages=USER)]
    assert events[-1].type == "message-end" and events[-1].delta.finish_reason == "ERROR"
    assert events[-1].delta.error == "internal model failure" and len(events) == 3


async def test_embed_types_float_base64_int8(co):
    emu, client = co
    resp = await client.embed(model="embed-v4.0", texts=["hello world", "bye"], input_type="search_document",
                              embedding_types=["float", "base64", "int8"])
    assert resp.response_type == "embeddings_by_type" and resp.texts == ["hello world", "bye"]
    assert resp.embeddings.float_ == [embedding("hello world", 8), embedding("bye", 8)]
    assert unpack_floats(resp.embeddings.base64[0]) == embedding("hello world", 8)
    assert resp.embeddings.int8[1] == [round(v * 127) for v in embedding("bye", 8)]
    assert resp.meta.billed_units.input_tokens == 3
    assert emu.state.last_request.json["input_type"] == "search_document"


async def test_models_list(co):
    _, client = co
    resp = await client.models.list(endpoint="embed")
    assert [m.name for m in resp.models] == ["embed-v4.0", "embed-english-v3.0"]


async def test_rejections(co):
    emu, client = co
    async with cohere.AsyncClientV2(api_key="co-wrong", base_url=emu.url, max_retries=0) as bad:
        with pytest.raises(cohere.UnauthorizedError) as info:
            await bad.chat(model=MODEL, messages=USER)
    assert info.value.body == {"id": info.value.body["id"], "message": "invalid api token"}
    with pytest.raises(cohere.BadRequestError) as info:
        await client.chat(model=MODEL, messages=USER, p=1.5)
    assert info.value.body["message"].startswith("invalid request: p must be between")
    cases = [("/v2/embed", {"model": "embed-english-v3.0", "texts": ["x"]}, "valid input_type must be provided"),
             ("/v2/chat", {"messages": USER}, "model must be specified"),
             ("/v2/chat", {"model": MODEL, "messages": USER, "top_p": 0.5}, "top_p is not a valid field"),
             ("/v2/chat", {"model": MODEL, "messages": []}, "messages cannot be empty")]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        for path, body, needle in cases:
            async with http.post(emu.url + path, json=body) as r:
                assert r.status == 400 and needle in (await r.json())["message"]
