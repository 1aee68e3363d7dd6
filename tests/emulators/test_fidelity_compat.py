"""Perplexity, xAI Grok, Blackbox and OpenRouter emulators through the `openai` SDK (raw HTTP where the
quirk is invisible to it)."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.support import drain

from .base import Fault
from .fixtures import parse_sse

KEY = "compat-key-0001"
USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


async def client_for(emulator, vendor: str, **opts):
    emu = await emulator(vendor, api_key=KEY, **opts)
    return emu, openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0)


async def raw_stream(emu, path: str, body: dict) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http, \
            http.post(emu.url + path, json={**body, "stream": True}) as r:
        assert r.status == 200
        return await r.text()


async def test_perplexity_chunks_carry_message_usage_and_sources(emulator):
    emu, client = await client_for(emulator, "perplexity")
    async with client:
        resp = await client.chat.completions.create(model="sonar", messages=USER, tools=[TOOL])
        assert resp.choices[0].message.content == "Hello from perplexity! You said: Weather in Paris?"
        assert resp.model_extra["citations"] and resp.model_extra["search_results"][0]["url"]
        chunks = [c async for c in await client.chat.completions.create(model="sonar", messages=USER, stream=True)]
    assert [c.usage.completion_tokens for c in chunks] == [1, 2, 3, 4, 5, 6, 7, 8, 8]  # cumulative
    assert chunks[-1].choices[0].model_extra["message"]["content"] == resp.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.model_extra["citations"] for c in chunks)
    text = await raw_stream(emu, "/chat/completions", {"model": "sonar", "messages": USER})
    assert "[DONE]" not in text and emu.state.last_request.path == "/chat/completions"


async def test_perplexity_rules(emulator):
    emu, client = await client_for(emulator, "perplexity", reject_tools=True)
    async with client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="sonar", messages=[*USER, *USER])
        assert "alternating" in info.value.message and info.value.body["code"] == 400
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="sonar", messages=USER, tools=[TOOL])
        with pytest.raises(openai.NotFoundError):  # no such route; recorded so tests can spot the call
            await client.models.list()
    assert emu.state.last_request.path == "/models"


async def test_grok_reasoning_content_and_usage(emulator):
    emu, client = await client_for(emulator, "grok")
    async with client:
        resp = await client.chat.completions.create(model="grok-3-mini", messages=USER)
        assert resp.choices[0].message.model_extra["reasoning_content"] == "Thinking about: Weather in Paris?"
        usage = resp.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 8, 16)
        assert usage.completion_tokens_details.reasoning_tokens == 5
        chunks = [c async for c in await client.chat.completions.create(model="grok-3-mini", messages=USER,
                                                                         stream=True)]
    thoughts = "".join(c.choices[0].delta.model_extra.get("reasoning_content", "") for c in chunks)
    assert thoughts == "Thinking about: Weather in Paris?"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens == 16
    assert emu.state.last_request.path == "/v1/chat/completions"


async def test_grok_flat_errors_and_bad_key_is_400(emulator):
    emu, client = await client_for(emulator, "grok")
    async with client, openai.AsyncOpenAI(base_url=emu.url, api_key="xai-wrong-key", max_retries=0) as bad:
        with pytest.raises(openai.BadRequestError) as info:
            await bad.chat.completions.create(model="grok-4", messages=USER)
        flat = info.value.response.json()  # the SDK's .body is the "error" string of a flat body
        assert flat["code"] == "Client specified an invalid argument"
        assert flat["error"] == info.value.body and flat["error"].startswith("Incorrect API key provided: xai***ey")
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="grok-4", messages=USER, stop=["x"])
        resp = await client.chat.completions.create(model="grok-4-fast-non-reasoning", messages=USER, stop=["x"])
        assert "reasoning_content" not in resp.choices[0].message.model_extra


async def test_blackbox_none_strings_and_provider_fields(emulator):
    emu, client = await client_for(emulator, "blackbox")
    async with client:
        raw = await client.chat.completions.with_raw_response.create(model="blackboxai/openai/gpt-4o",
                                                                     messages=USER)
        body = raw.http_response.json()
        chunks = [c async for c in await client.chat.completions.create(model="blackboxai/openai/gpt-4o",
                                                                         messages=USER, stream=True)]
    choice = body["choices"][0]
    assert choice["message"]["tool_calls"] == "None" and choice["message"]["function_call"] == "None"
    assert body["system_fingerprint"] == "None" and body["model"] == "openai/gpt-4o"
    assert choice["provider_specific_fields"] == {"native_finish_reason": "stop"}
    assert chunks[-1].usage.total_tokens == 11 and emu.state.last_request.path == "/chat/completions"


async def test_openrouter_stream_comments_native_finish_and_cost(emulator):
    emu, client = await client_for(emulator, "openrouter")
    headers = {"HTTP-Referer": "https://gateway.example", "X-Title": "llm-gateway"}
    async with client:
        resp = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER,
                                                    extra_headers=headers)
        chunks = [c async for c in await client.chat.completions.create(model="openai/gpt-4o-mini",
                                                                         messages=USER, stream=True)]
    assert resp.choices[0].model_extra["native_finish_reason"] == "stop"
    assert resp.usage.model_extra["cost"] == pytest.approx(3e-6 + 16e-6)
    sent = emu.state.requests[0].headers
    assert (sent["http-referer"], sent["x-title"]) == ("https://gateway.example", "llm-gateway")
    assert chunks[-1].choices == [] and chunks[-1].usage.model_extra["cost"] > 0
    events = parse_sse(await raw_stream(emu, "/chat/completions", {"model": "openai/gpt-4o-mini",
                                                                   "messages": USER}), comments=True)
    assert events[:2] == [("comment", "OPENROUTER PROCESSING")] * 2 and events[-1] == (None, "[DONE]")


async def test_openrouter_errors(emulator):
    emu, client = await client_for(emulator, "openrouter")
    async with client:
        emu.state.script(Fault.status(402, "Insufficient credits"), Fault.stream_error(after=2, message="gone"))
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
        assert info.value.status_code == 402 and info.value.body["code"] == 402
        with pytest.raises(openai.APIError, match="gone"):
            await drain(await client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER,
                                                                stream=True))
    async with aiohttp.ClientSession() as http, http.get(f"{emu.url}/models") as r:  # public: no key
        assert r.status == 200 and (await r.json())["data"][0]["id"] == "openai/gpt-4o-mini"
