"""A non-stream answer from an OpenAI-compatible vendor goes to the client as the bytes that came,
unless a plugin saw it (``gateway_response``) or the adapter fixes responses up."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from gateway.adapter import ProviderAdapter
from plugins.providers.blackbox import BlackboxAdapter
from plugins.providers.openai import OpenAIAdapter, OpenAICompatibleAdapter
from tests.conftest import make_config
from tests.support import chat_body, openai_provider

# Spacing and key order no encoder of ours produces: only relayed bytes look like this.
VENDOR_BODY = (b'{ "id" : "chatcmpl-1",\n  "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",\n'
               b'  "choices": [{"index": 0, "message": {"role": "assistant", "content": "caf\\u00e9"},'
               b' "finish_reason": "stop"}],\n  "usage": {"prompt_tokens": 5, "completion_tokens": 2,'
               b' "total_tokens": 7} }')


@pytest.fixture
async def vendor(aiohttp_server):
    async def chat(request: web.Request) -> web.Response:
        return web.Response(body=VENDOR_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = await aiohttp_server(app)
    return str(server.make_url("/v1"))


async def test_the_vendor_bytes_reach_the_client_unchanged_and_usage_is_still_counted(gateway, vendor, http):
    gw = await gateway(make_config(openai_provider(vendor)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert int(resp.headers["Content-Length"]) == len(VENDOR_BODY)
        assert await resp.read() == VENDOR_BODY
    async with http.get(gw.url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'llm_gateway_tokens_total{kind="prompt",model="gpt-4o-mini",provider="oai"} 5.0' in metrics


async def test_an_answer_a_plugin_saw_is_encoded_again(gateway, vendor, http):
    gw = await gateway(make_config(openai_provider(vendor), cache={"enabled": True}))
    assert gw.gw.on_response
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        body = await resp.read()
    assert body != VENDOR_BODY and orjson.loads(body) == orjson.loads(VENDOR_BODY)


def test_only_adapters_that_pass_the_vendor_json_unchanged_relay_its_bytes():
    assert OpenAIAdapter.relays_response_bytes and not ProviderAdapter.relays_response_bytes
    assert not BlackboxAdapter.relays_response_bytes  # rewrites "None" strings to null

    class FixesUp(OpenAICompatibleAdapter):
        def parse_response(self, op, payload, model):
            return payload | {"fixed": True}

    class SaysItIsUnchanged(FixesUp):
        relays_response_bytes = True

    assert not FixesUp.relays_response_bytes and SaysItIsUnchanged.relays_response_bytes
