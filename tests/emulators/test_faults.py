"""Scripted faults and the synchronisation hooks (events, counters) shared by every emulator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.support import drain

from .base import EmulatorState, Fault, ToolReply
from .fixtures import parse_sse

KEY = "fault-key"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
AUTH = {"Authorization": f"Bearer {KEY}"}


def open_stream(http: aiohttp.ClientSession, url: str) -> Any:
    """`async with open_stream(...) as resp`: the context manager releases the connection even on errors."""
    return http.post(f"{url}/chat/completions", json={**CHAT, "stream": True}, headers=AUTH)


async def test_first_event_is_sent_before_release(emulator):
    emu = await emulator("openai", api_key=KEY, release=asyncio.Event())
    async with aiohttp.ClientSession() as http, open_stream(http, emu.url) as resp:
        first = await resp.content.readuntil(b"\n\n")
        assert b'"role":"assistant"' in first and emu.state.stream_started.is_set()
        assert emu.state.active_streams == 1 and not emu.state.stream_closed.is_set()  # paused upstream
        emu.state.release.set()
        rest = await resp.text()
    assert rest.endswith("data: [DONE]\n\n") and emu.state.active_streams == 0


async def test_client_disconnect_cancels_the_stream(emulator):
    emu = await emulator("openai", api_key=KEY, release=asyncio.Event())
    async with aiohttp.ClientSession() as http, open_stream(http, emu.url) as resp:
        await resp.content.readuntil(b"\n\n")
        resp.close()
        await asyncio.wait_for(emu.state.client_closed.wait(), 5)
    assert (emu.state.client_disconnects, emu.state.active_streams, emu.state.streams_opened) == (1, 0, 1)


async def test_stall_holds_the_stream_until_the_client_gives_up(emulator):
    emu = await emulator("openai", api_key=KEY)
    emu.state.script(Fault.stall(after=2))
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as http, open_stream(http, emu.url) as resp:
        with pytest.raises(asyncio.TimeoutError):
            await resp.text()
        resp.close()
        await asyncio.wait_for(emu.state.client_closed.wait(), 5)
    assert emu.state.active_streams == 0


async def test_drop_mid_stream_closes_without_terminator(emulator):
    emu = await emulator("openai", api_key=KEY)
    emu.state.script(Fault.drop_mid_stream(after=2))
    async with aiohttp.ClientSession() as http, open_stream(http, emu.url) as resp:
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for line in resp.content:
                received += line
    assert len(parse_sse(received.decode())) == 2 and b"[DONE]" not in received
    await asyncio.wait_for(emu.state.stream_closed.wait(), 5)
    assert emu.state.client_disconnects == 0  # the server hung up, not the client


@pytest.mark.parametrize(("vendor", "path", "body", "headers", "terminal"), [
    ("openai", "/chat/completions", CHAT, AUTH, "[DONE]"),
    ("anthropic", "/v1/messages", {**CHAT, "max_tokens": 8}, {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
     "message_stop"),
    ("cohere", "/v2/chat", CHAT, AUTH, "message-end"),
])
async def test_no_terminal_ends_cleanly_without_the_terminal_event(emulator, vendor, path, body, headers, terminal):
    emu = await emulator(vendor, api_key=KEY)
    emu.state.script(Fault.no_terminal())
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(emu.url + path, json={**body, "stream": True}) as resp:
            text = await resp.text()
        async with http.post(emu.url + path, json={**body, "stream": True}) as resp:
            assert terminal in await resp.text()  # one-shot: the next stream is whole again
    assert text and terminal not in text


async def test_bad_sse_breaks_sdk_parsing_mid_stream(emulator):
    emu = await emulator("openai", api_key=KEY)
    emu.state.script(Fault.bad_sse(after=1))
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(**CHAT, stream=True)
        with pytest.raises(json.JSONDecodeError):
            await drain(stream)


async def test_bad_json_html_error_and_first_byte_delay(emulator):
    emu = await emulator("openai", api_key=KEY)
    emu.state.script(Fault.bad_json(), Fault.html_error(502), Fault.delay_first_byte(5))
    async with aiohttp.ClientSession(headers=AUTH) as http, http.post(f"{emu.url}/chat/completions",
                                                                      json=CHAT) as r:
        assert r.status == 200 and r.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await r.text())
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0, timeout=0.2) as client:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(**CHAT)
        assert info.value.status_code == 502 and info.value.response.headers["content-type"].startswith("text/html")
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(**CHAT)
        assert (await client.chat.completions.create(**CHAT)).choices[0].finish_reason == "stop"


async def test_faults_are_fifo_per_matching_path_and_kind(emulator):
    emu = await emulator("openai", api_key=KEY)
    emu.state.script(Fault.drop_mid_stream(), Fault.status(500, path="/embeddings"), Fault.status(429))
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError):  # the stream fault waits for a stream, 500 for /embeddings
            await client.chat.completions.create(**CHAT)
        with pytest.raises(openai.InternalServerError):
            await client.embeddings.create(model="text-embedding-3-small", input="x")
        await client.chat.completions.create(**CHAT)
    assert [f.kind for f in emu.state.faults] == ["drop_mid_stream"]


STATUS_SHAPES = [
    ("openai", "/chat/completions", lambda b: b["error"]["type"] == "requests"),
    ("azure", "/openai/deployments/gpt-4o-mini/chat/completions", lambda b: b["error"]["code"] == "429"),
    ("anthropic", "/v1/messages", lambda b: b["type"] == "error" and b["error"]["type"] == "rate_limit_error"),
    ("cohere", "/v2/chat", lambda b: set(b) == {"id", "message"}),
    ("perplexity", "/chat/completions", lambda b: b["error"]["code"] == 429),
    ("grok", "/chat/completions", lambda b: b == {"code": "Too many requests", "error": "Rate limit exceeded"}),
    ("blackbox", "/chat/completions", lambda b: b["error"]["code"] == "429"),
    ("openrouter", "/chat/completions", lambda b: b["error"]["code"] == 429),
]


@pytest.mark.parametrize(("vendor", "path", "check"), STATUS_SHAPES, ids=[s[0] for s in STATUS_SHAPES])
async def test_status_fault_bodies_are_vendor_shaped(emulator, vendor, path, check):
    emu = await emulator(vendor, api_key=KEY)
    emu.state.script(Fault.status(429, retry_after=1))
    async with aiohttp.ClientSession() as http, http.post(emu.url + path, json=CHAT) as r:
        assert r.status == 429 and r.headers["retry-after"] == "1"
        assert check(await r.json())


async def test_reply_overrides(emulator):
    state = EmulatorState(api_key=KEY, reply_text="Fixed reply text", tool_reply=ToolReply(arguments={"x": 1}))
    emu = await emulator("openai", state=state)
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    async with openai.AsyncOpenAI(base_url=emu.url, api_key=KEY, max_retries=0) as client:
        text = await client.chat.completions.create(**CHAT)
        call = await client.chat.completions.create(**CHAT, tools=[tool])
    assert text.choices[0].message.content == "Fixed reply text" and text.usage.completion_tokens == 3
    assert json.loads(call.choices[0].message.tool_calls[0].function.arguments) == {"x": 1}
