"""The cohere adapter end to end: the official ``openai`` SDK → a real gateway → the Cohere v2 emulator."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from gateway.health import check_provider
from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.emulators.replies import embedding, unpack_floats
from tests.support import drain

CHAT_MODEL = "co/command-a-03-2025"
EMBED_MODEL = "co/embed-v4.0"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def cohere_provider(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "co", "type": "cohere", "base_url": url, "api_key": "co-key",
            "models": ["command-a-03-2025", "embed-v4.0"], "health_check": {"enabled": False},
            "retry": {"attempts": 0}, **extra}


Setup = Callable[..., Awaitable[tuple[Any, openai.AsyncOpenAI]]]


@pytest.fixture
def setup(gateway, emulator, sdk) -> Setup:
    """``emu, client = await setup(**provider_extra)``: emulator + gateway + SDK client (closed after)."""

    async def start(**extra: Any) -> tuple[Any, openai.AsyncOpenAI]:
        emu = await emulator("cohere", api_key="co-key")
        return emu, sdk(await gateway(make_config(cohere_provider(emu.url, **extra))))

    return start


async def test_chat_places_system_as_a_system_message_and_reports_billed_usage(setup):
    emu, client = await setup()
    resp = await client.chat.completions.create(model=CHAT_MODEL, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}],
        top_p=1, stop=["zzz"], max_tokens=50)
    sent = emu.state.last_request
    assert (sent.path, sent.headers["authorization"]) == ("/v2/chat", "Bearer co-key")
    assert sent.json == {"model": "command-a-03-2025", "stream": False, "p": 0.99, "stop_sequences": ["zzz"],
                         "max_tokens": 50, "messages": [{"role": "system", "content": "Be brief."},
                                                        {"role": "user", "content": "hi there"}]}
    assert resp.choices[0].message.content == "Hello from cohere! You said: hi there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "command-a-03-2025" and resp.object == "chat.completion"
    # billed_units: 4 prompt words, 7 reply words (usage.tokens would add Cohere's hidden preamble).
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (4, 7, 11)


async def test_usage_source_tokens_counts_the_preamble(setup):
    _, client = await setup(options={"usage_source": "tokens"})
    resp = await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert resp.usage.prompt_tokens == 1 + 64  # emulator's PREAMBLE_TOKENS


async def test_max_tokens_finish_is_length(setup):
    _, client = await setup()
    resp = await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_completion_tokens=2)
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == ("Hello from", "length")


async def test_stream_delivers_text_incrementally_with_usage_chunk(setup):
    emu, client = await setup()
    stream = await client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi there"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert emu.state.last_request.json["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from cohere! You said: hi there"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 7  # one per word
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 2 + 7
    assert len({c.id for c in chunks}) == 1


async def test_stream_without_include_usage_has_no_usage_chunk(setup):
    _, client = await setup()
    stream = await client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


async def test_streamed_tool_call_round_trip(setup):
    emu, client = await setup()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Paris"}]
    async with client.chat.completions.stream(model=CHAT_MODEL, messages=messages, tools=[WEATHER],
                                              tool_choice="required") as stream:
        final = await stream.get_final_completion()
    assert emu.state.last_request.json["tool_choice"] == "REQUIRED"
    assert emu.state.last_request.json["tools"] == [WEATHER]
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("tool_emu")
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # assembled from streamed fragments
    # The assistant turn replayed as the SDK models it, then the tool result.
    messages.append(choice.message.model_dump(exclude_none=True, exclude={"parsed"}))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
    resp = await client.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER])
    sent = emu.state.last_request.json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[1]["tool_plan"] == "I will call get_weather."
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}
    assert resp.choices[0].message.content == "Hello from cohere! Tool said: sunny, 21C"


async def test_non_stream_tool_call_and_named_tool_choice(setup):
    emu, client = await setup()
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    resp = await client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Rome"}], tools=[other, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    sent = emu.state.last_request.json
    assert (sent["tool_choice"], sent["tools"]) == ("REQUIRED", [WEATHER])
    message = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls" and message.content is None
    assert message.tool_calls[0].function.arguments == '{"city": "Rome"}'


async def test_embeddings_float_base64_and_sdk_default(setup):
    emu, client = await setup()
    expected = [embedding(t, 8) for t in ("a b", "c")]
    floats = await client.embeddings.create(model=EMBED_MODEL, input=["a b", "c"], encoding_format="float")
    assert emu.state.last_request.path == "/v2/embed"
    assert emu.state.last_request.json == {"model": "embed-v4.0", "texts": ["a b", "c"],
                                           "input_type": "search_document", "embedding_types": ["float"]}
    assert [d.embedding for d in floats.data] == expected and [d.index for d in floats.data] == [0, 1]
    assert (floats.usage.prompt_tokens, floats.usage.total_tokens) == (3, 3)
    raw = await client.embeddings.create(model=EMBED_MODEL, input="a b", encoding_format="base64", dimensions=16)
    assert emu.state.last_request.json["embedding_types"] == ["base64"]
    assert emu.state.last_request.json["output_dimension"] == 16
    assert unpack_floats(raw.data[0].embedding) == embedding("a b", 16)
    # The SDK asks for base64 by default and decodes it itself: the bytes must be OpenAI's layout.
    decoded = await client.embeddings.create(model=EMBED_MODEL, input="c", extra_body={"input_type": "search_query"})
    assert emu.state.last_request.json["input_type"] == "search_query"
    assert decoded.data[0].embedding == expected[1]


async def test_legacy_completions_through_chat(setup):
    emu, client = await setup()
    resp = await client.completions.create(model=CHAT_MODEL, prompt="Say hi", max_tokens=20)
    assert emu.state.last_request.json["messages"] == [{"role": "user", "content": "Say hi"}]
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "Hello from cohere! You said: Say hi"
    assert resp.usage.prompt_tokens == 2
    stream = await client.completions.create(model=CHAT_MODEL, prompt="Say hi", stream=True,
                                             stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from cohere! You said: Say hi"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 7


async def test_models_listing_includes_cohere_models(setup):
    emu, client = await setup()
    ids = [m.id async for m in client.models.list()]
    assert "co/command-r-plus-08-2024" in ids and "co/embed-english-v3.0" in ids
    assert emu.state.last_request.path == "/v1/models"


async def test_upstream_auth_failure_is_502(setup):
    _, client = await setup(api_key="wrong")
    with pytest.raises(openai.InternalServerError) as exc:
        await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 502
    assert exc.value.body["code"] == "upstream_auth_error" and "invalid api token" in exc.value.body["message"]
    assert "wrong" not in exc.value.body["message"]


async def test_rate_limit_keeps_429_and_retry_after(setup):
    emu, client = await setup()
    emu.state.script(Fault.status(429, "You are using a Trial key, which is limited", retry_after=7))
    with pytest.raises(openai.RateLimitError) as exc:
        await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.response.headers["retry-after"] == "7"
    assert "Trial key" in exc.value.body["message"]


async def test_vendor_400_passes_through_with_its_message(setup):
    _, client = await setup()
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}],
                                             frequency_penalty=1.5)
    assert exc.value.body["message"] == "co: invalid request: frequency_penalty must be between 0 and 1, got 1.5"
    assert exc.value.body["type"] == "invalid_request_error"


async def test_gateway_400_for_what_cohere_cannot_do(setup):
    emu, client = await setup()
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    assert exc.value.body["param"] == "n"
    assert emu.state.requests == []


async def test_mid_stream_error_becomes_an_sse_error_the_sdk_raises(setup):
    emu, client = await setup()
    emu.state.script(Fault.stream_error(after=3, message="internal server error, please retry"))
    stream = await client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi there"}], stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError, match="internal server error, please retry"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello "  # what arrived before the error stays delivered


async def test_stream_cut_before_message_end_is_an_error_not_a_clean_end(setup):
    emu, client = await setup()
    emu.state.script(Fault.no_terminal())
    stream = await client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="ended before its final event"):
        await drain(stream)


async def test_health_check_is_a_one_entry_model_listing(gateway, emulator):
    emu = await emulator("cohere", api_key="co-key")
    gw = await gateway(make_config(cohere_provider(emu.url)))
    provider = gw.gw.registry["co"]
    assert await check_provider(provider)
    sent = emu.state.last_request
    assert (sent.method, sent.path, sent.query) == ("GET", "/v1/models", {"page_size": "1"})
    emu.state.api_key = "rotated"
    assert not await check_provider(provider)
    assert provider.health.status == "unhealthy" and "invalid api token" in provider.health.last_error
