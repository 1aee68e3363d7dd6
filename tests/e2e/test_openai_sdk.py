"""The official openai SDK as the client: sync, async and streaming, through the gateway to a
real OpenAI emulator. Our wire format is checked by code we did not write."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.conftest import make_config
from tests.support import drain, openai_provider

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


@pytest.fixture
async def gw_oai(gateway, emulator):
    emu = await emulator("openai")
    gw = await gateway(make_config(openai_provider(emu.url, models=["gpt-4o-mini", "text-embedding-3-small"])))
    return gw, emu


async def test_async_client_chat_stream_embeddings_models(gw_oai):
    gw, emu = gw_oai
    async with openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
        resp = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert resp.choices[0].message.content == "Hello from openai! You said: hello there"
        assert resp.usage.prompt_tokens == 4
        stream = await client.chat.completions.create(
            model="oai/gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
        assert text == "Hello from openai! You said: hello there"
        assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        emb = await client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
        assert len(emb.data) == 2 and emb.usage.prompt_tokens == 3
        emb64 = await client.embeddings.create(model="text-embedding-3-small", input="a b")  # SDK asks base64
        assert len(emb64.data[0].embedding) == len(emb.data[0].embedding)
        models = await client.models.list()
        assert "oai/gpt-4o-mini" in [m.id for m in models.data]
    # The vendor saw its own key and the upstream model name, never the gateway's routing prefix.
    sent = [r for r in emu.state.requests if r.path.endswith("/chat/completions")][-1]
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.json["model"] == "gpt-4o-mini"


async def test_sync_client_works_too(gw_oai):
    gw, _ = gw_oai

    def call() -> str:
        with openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
            out = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True) if c.choices)
            assert streamed == out.choices[0].message.content
            return out.choices[0].message.content

    # The sync client blocks, and the gateway runs on this test's loop: call it from a thread.
    assert await asyncio.to_thread(call) == "Hello from openai! You said: hello there"


async def test_sdk_raises_typed_errors_from_our_envelopes(gw_oai):
    gw, emu = gw_oai
    async with openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="no-such-model", messages=MESSAGES)
        assert missing.value.code == "model_not_found"
        emu.state.api_key = "rotated"  # our vendor key is now wrong: the gateway's problem, not the client's
        with pytest.raises(openai.InternalServerError) as bad_gateway:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert bad_gateway.value.status_code == 502
        assert bad_gateway.value.code == "upstream_auth_error"


async def test_sdk_raises_on_a_mid_stream_error_event(gateway, emulator):
    from tests.emulators.base import Fault

    emu = await emulator("openai")
    emu.state.script(Fault.drop_mid_stream(after=2))
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError):
            await drain(stream)
