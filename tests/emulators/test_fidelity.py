"""The OpenAI and Azure OpenAI emulators, driven by the official `openai` SDK (no gateway involved)."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest

from .base import Fault
from .replies import embedding, unpack_floats

KEY = "sk-emulator-test-0001"
USER = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
async def oa(emulator):
    emu = await emulator("openai", api_key=KEY)
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0) as client:
        yield emu, client


async def test_chat_reply_and_usage_derive_from_the_request(oa):
    emu, client = oa
    resp = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, *USER])
    assert resp.choices[0].message.content == "Hello from openai! You said: Weather in Paris?"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (5, 8, 13)
    sent = emu.state.last_request
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json["messages"][1] == USER[0]


async def test_stream_sends_usage_chunk_only_when_asked(oa):
    _, client = oa
    for include in (True, False):
        options = {"stream_options": {"include_usage": True}} if include else {}
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **options)
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from openai! You said: Weather in Paris?"
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 3
        assert chunks[-1 if not include else -2].choices[0].finish_reason == "stop"
        if include:
            assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
        else:
            assert all(c.usage is None and c.choices for c in chunks)


async def test_stream_tool_call_arguments_assemble_by_index(oa):
    _, client = oa
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL],
                                                  stream=True)
    calls: dict[int, dict[str, str]] = {}
    fragments, finish = 0, None
    async for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.id or ""
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
            fragments += bool(tc.function and tc.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and fragments >= 2
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Weather in Paris?"}


async def test_tool_result_turn_gets_a_text_reply(oa):
    _, client = oa
    first = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    history = [*USER, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    second = await client.chat.completions.create(model="gpt-4o-mini", messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Hello from openai! Tool said: 18C and sunny"


async def test_n_max_tokens_and_stop(oa):
    _, client = oa
    resp = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, n=2, max_tokens=3)
    assert [c.message.content for c in resp.choices] == ["Hello from openai!"] * 2
    assert {c.finish_reason for c in resp.choices} == {"length"} and resp.usage.completion_tokens == 6
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, n=2, stream=True)
    texts = ["", ""]
    async for chunk in stream:
        assert len(chunk.choices) == 1  # one choice per chunk, interleaved
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert texts == ["Hello from openai! You said: Weather in Paris?"] * 2
    resp = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stop=["!"])
    assert resp.choices[0].message.content == "Hello from openai" and resp.choices[0].finish_reason == "stop"


async def test_legacy_completions_plain_and_streamed(oa):
    _, client = oa
    resp = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert resp.choices[0].text == "Hello from openai! You said: Say hi" and resp.usage.prompt_tokens == 2
    stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == resp.choices[0].text


async def test_embeddings_float_and_base64_are_deterministic(oa):
    emu, client = oa
    floats = await client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert [d.embedding for d in floats.data] == [embedding("hello world", 8), embedding("bye", 8)]
    assert floats.usage.prompt_tokens == 3
    packed = await client.embeddings.create(model="text-embedding-3-small", input="hello world",
                                            encoding_format="base64", dimensions=16)
    assert emu.state.last_request.json["encoding_format"] == "base64"
    assert unpack_floats(packed.data[0].embedding) == embedding("hello world", 16)


async def test_models_list(oa):
    _, client = oa
    ids = [m.id async for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert (await client.models.retrieve("gpt-4o")).owned_by == "system"


async def test_rejections_map_to_sdk_exceptions(emulator):
    emu = await emulator("openai", api_key=KEY, known_models=["gpt-4o-mini"])
    async with openai.AsyncOpenAI(base_url=emu.url, api_key="sk-wrong-key-123", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert info.value.body["code"] == "invalid_api_key" and "wrong-key" not in str(info.value)
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0) as client:
        cases = [({"messages": []}, "messages"), ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
                 ({"messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]}, "messages.[0].role"),
                 ({"messages": USER, "stream_options": {"include_usage": True}}, "stream_options"),
                 ({"messages": USER, "model": ""}, "model")]
        for extra, param in cases:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(**{"model": "gpt-4o-mini", **extra})
            assert info.value.body["param"] == param and info.value.body["type"] == "invalid_request_error"
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="gpt-5-imaginary", messages=USER)
        assert info.value.code == "model_not_found"
        emu.state.script(Fault.status(429, retry_after=2), Fault.status(503))
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert info.value.response.headers["retry-after"] == "2" and info.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)


# -- Azure ---------------------------------------------------------------------------------------------

@pytest.fixture
async def azure(emulator):
    emu = await emulator("azure", api_key=KEY, deployments={"chat-dep": "gpt-4o-mini-2024-07-18",
                                                            "embed-dep": "text-embedding-3-small"})
    async with openai.AsyncAzureOpenAI(azure_endpoint=emu.url, api_key=KEY, api_version="2024-10-21",
                                       max_retries=0) as client:
        yield emu, client


async def test_azure_classic_chat_carries_filter_results(azure):
    emu, client = azure
    resp = await client.chat.completions.create(model="chat-dep", messages=USER)
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert resp.choices[0].message.content == "Hello from azure! You said: Weather in Paris?"
    assert resp.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert resp.choices[0].model_extra["content_filter_results"]["hate"]["filtered"] is False
    sent = emu.state.last_request
    assert sent.path == "/openai/deployments/chat-dep/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"} and sent.headers["api-key"] == KEY


async def test_azure_stream_starts_with_prompt_filter_chunk(azure):
    _, client = azure
    stream = await client.chat.completions.create(model="chat-dep", messages=USER, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[0].choices == [] and chunks[0].id == "" and chunks[0].model_extra["prompt_filter_results"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Hello from azure")
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 11


async def test_azure_embeddings_and_unknown_deployment(azure):
    _, client = azure
    resp = await client.embeddings.create(model="embed-dep", input="hi")
    assert resp.data[0].embedding == embedding("hi", 8)
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="nope", messages=USER)
    assert info.value.body == {"code": "DeploymentNotFound", "message": info.value.body["message"]}


async def test_azure_v1_surface_takes_bearer_and_deployment_as_model(azure):
    emu, _ = azure
    async with openai.AsyncOpenAI(base_url=f"{emu.url}/openai/v1", api_key=KEY, max_retries=0) as client:
        resp = await client.chat.completions.create(model="chat-dep", messages=USER)
    assert resp.model == "gpt-4o-mini-2024-07-18" and emu.state.last_request.path == "/openai/v1/chat/completions"


async def test_azure_requires_api_key_header_and_api_version(azure):
    emu, _ = azure
    url = f"{emu.url}/openai/deployments/chat-dep/chat/completions"
    body = {"messages": USER}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, params={"api-version": "2024-10-21"},
                             headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "401"
        async with http.post(url, json=body, headers={"api-key": KEY}) as r:
            assert r.status == 404 and (await r.json())["error"]["message"] == "Resource not found"
