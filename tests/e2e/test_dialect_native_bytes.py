"""Native relays are byte for byte: a test upstream answers with fixed bytes (odd spacing, events
split across writes) and records what it got; the client must get exactly those bytes, and the
upstream exactly the client's body with only the model replaced."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anthropic
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import make_config

MESSAGE = (b'{"id":"msg_native01",  "type":"message","role":"assistant","model":"claude-upstream-name",'
           b'"content":[{"type":"text","text":"native bytes"}],"stop_reason":"end_turn","stop_sequence":null,'
           b'"usage":{"input_tokens":11,"output_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":4}}')
MESSAGE_STREAM = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_native02","type":"message",'
    b'"role":"assistant","model":"claude-upstream-name","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":11,"output_tokens":1}}}\n\nevent: ping\ndata: {"type": "ping"}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
    b'"text":""}}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"native "}}\n\nevent: content_block_del',
    b'ta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"stream"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":2}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
]
RESPONSE = (b'{"id":"resp_native01","object":"response","created_at":1700000000,"status":"completed",'
            b'"model":"gpt-upstream-name","output":[{"id":"msg_n1","type":"message","role":"assistant",'
            b'"status":"completed","content":[{"type":"output_text","text":"native bytes","annotations":[]}]}],'
            b'"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"store":true,'
            b'"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},"output_tokens":2,'
            b'"output_tokens_details":{"reasoning_tokens":0},"total_tokens":11}}')


def response_stream() -> list[bytes]:
    final = json.loads(RESPONSE)
    events = [("response.created", {"response": {**final, "status": "in_progress", "output": [], "usage": None}}),
              ("response.output_item.added", {"output_index": 0, "item": {
                  "id": "msg_n1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
              ("response.content_part.added", {"item_id": "msg_n1", "output_index": 0, "content_index": 0,
                                               "part": {"type": "output_text", "text": "", "annotations": []}}),
              ("response.output_text.delta", {"item_id": "msg_n1", "output_index": 0, "content_index": 0,
                                              "delta": "native bytes", "logprobs": []}),
              ("response.output_text.done", {"item_id": "msg_n1", "output_index": 0, "content_index": 0,
                                             "text": "native bytes", "logprobs": []}),
              ("response.output_item.done", {"output_index": 0, "item": final["output"][0]}),
              ("response.completed", {"response": final})]
    return [f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': i, **data})}\n\n".encode()
            for i, (name, data) in enumerate(events)]


@dataclass
class Upstream:
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.paths.append(request.path)
        if request.path.endswith("/count_tokens"):
            return web.Response(body=b'{"input_tokens":  42}', content_type="application/json")
        anthropic_api = request.path.endswith("/messages")
        if not json.loads(raw).get("stream"):
            return web.Response(body=MESSAGE if anthropic_api else RESPONSE, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in MESSAGE_STREAM if anthropic_api else response_stream():
            await resp.write(part)
            await asyncio.sleep(0.005)  # separate reads at the gateway
        await resp.write_eof()
        return resp


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    up = Upstream()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", up.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield up, f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
async def gw(gateway, upstream):
    _, url = upstream
    off = {"health_check": {"enabled": False}, "retry": {"attempts": 0}}
    return await gateway(make_config(
        {"name": "claude", "type": "anthropic", "base_url": url, "api_key": "sk-up", "models": ["claude-x"], **off},
        {"name": "oai", "type": "openai", "base_url": url + "/v1", "api_key": "sk-up", "models": ["gpt-x"], **off},
        {"name": "az", "type": "azure_openai", "base_url": url, "api_key": "az-up", "models": ["gpt-az"],
         "options": {"api_style": "v1"}, **off},
        {"name": "azc", "type": "azure_openai", "base_url": url, "api_key": "az-up", "models": ["gpt-azc"], **off}))


BODY = b'{"model": "claude-x",\n "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], "stream": %s}'


@pytest.mark.parametrize("stream", [False, True])
async def test_messages_native_relay_is_byte_for_byte(gw, upstream, http, stream):
    up, _ = upstream
    body = BODY % (b"true" if stream else b"false")
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", "anthropic-beta": "x-1,y-2"}
    async with http.post(gw.url + "/v1/messages", data=body, headers=headers) as resp:
        got = await resp.read()
    assert resp.status == 200
    assert got == (b"".join(MESSAGE_STREAM) if stream else MESSAGE)
    assert up.bodies[-1] == body  # the model name is the same upstream: nothing to rewrite
    assert up.headers[-1]["anthropic-beta"] == "x-1,y-2" and up.headers[-1]["x-api-key"] == "sk-up"


async def test_native_relay_rewrites_only_the_model(gw, upstream, http):
    up, _ = upstream
    body = BODY.replace(b'"claude-x"', b'"claude/claude-x"') % b"false"
    async with http.post(gw.url + "/v1/messages", data=body, headers={"anthropic-version": "2023-06-01"}) as resp:
        assert await resp.read() == MESSAGE
    assert up.bodies[-1] == BODY.replace(b'"model": "claude-x"', b'"model":"claude-x"') % b"false"


async def test_native_usage_is_read_for_metrics(gw, upstream, http):
    headers = {"anthropic-version": "2023-06-01"}
    async with http.post(gw.url + "/v1/messages", data=BODY % b"true", headers=headers) as resp:
        await resp.read()
    async with http.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    assert 'operation="messages"' in text
    assert 'llm_gateway_tokens_total{kind="prompt",model="claude-x",provider="claude"} 11.0' in text
    assert 'llm_gateway_tokens_total{kind="completion",model="claude-x",provider="claude"} 2.0' in text


async def test_native_with_the_sdk_and_count_tokens(gw, upstream):
    up, _ = upstream
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
        async with client.messages.stream(model="claude-x", max_tokens=20,
                                          messages=[{"role": "user", "content": "hi"}]) as stream:
            final = await stream.get_final_message()
        count = await client.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert final.content[0].text == "native stream" and final.model == "claude-upstream-name"
    assert final.usage.output_tokens == 2
    assert count.input_tokens == 42 and up.paths[-1] == "/v1/messages/count_tokens"


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_native_relay_is_byte_for_byte(gw, upstream, http, stream):
    up, _ = upstream
    body = b'{"model": "gpt-x", "input": "hi",  "store": true, "previous_response_id": "resp_0", "stream": %s}' % (
        b"true" if stream else b"false")
    async with http.post(gw.url + "/v1/responses", data=body, headers={"content-type": "application/json"}) as resp:
        got = await resp.read()
    assert resp.status == 200
    assert got == (b"".join(response_stream()) if stream else RESPONSE)
    assert up.bodies[-1] == body and up.paths[-1] == "/v1/responses"
    assert up.headers[-1]["authorization"] == "Bearer sk-up"


async def test_responses_native_with_the_sdk(gw):
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        created = await client.responses.create(model="gpt-x", input="hi")
        async with client.responses.stream(model="gpt-x", input="hi") as stream:
            final = await stream.get_final_response()
    assert created.output_text == "native bytes" and final.output_text == "native bytes"
    assert final.usage.total_tokens == 11


async def test_models_listing_shapes(gw, http):
    async with http.get(gw.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}) as resp:
        shaped = await resp.json()
    async with http.get(gw.url + "/v1/models") as resp:
        plain = await resp.json()
    assert shaped["data"][0]["type"] == "model" and "has_more" in shaped
    assert plain["object"] == "list"


async def test_azure_v1_relays_responses_and_classic_translates(gw, upstream, http):
    up, _ = upstream
    async with http.post(gw.url + "/v1/responses", json={"model": "gpt-az", "input": "hi"}) as resp:
        assert await resp.read() == RESPONSE
    assert up.paths[-1] == "/openai/v1/responses" and up.headers[-1]["api-key"] == "az-up"
    async with http.post(gw.url + "/v1/responses", json={"model": "gpt-azc", "input": "hi"}) as resp:
        await resp.read()
    assert up.paths[-1] == "/openai/deployments/gpt-azc/chat/completions"  # classic Azure: translated
