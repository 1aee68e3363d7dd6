"""The OpenAI-compatible HTTP surface over real loopback sockets, against the offline mock."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from tests.conftest import MOCK_PROVIDER, make_config


async def test_chat_completion_returns_openai_shape_and_provider_header(gateway, http):
    gw = await gateway()
    async with http.post(gw.v1 + "/chat/completions", json={
        "model": "mock-1", "messages": [{"role": "user", "content": "hello world"}],
    }) as resp:
        assert resp.status == 200
        assert resp.headers["x-gateway-provider"] == "mock"
        assert resp.headers["x-request-id"].startswith("req_")
        body = await resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "You said: hello world"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


async def test_provider_prefixed_model_routes_to_that_provider(gateway, http):
    other = {**MOCK_PROVIDER, "name": "second", "models": []}
    gw = await gateway(make_config(MOCK_PROVIDER, other))
    async with http.post(gw.v1 + "/chat/completions", json={
        "model": "second/anything-goes", "messages": [{"role": "user", "content": "x"}],
    }) as resp:
        assert resp.status == 200
        assert resp.headers["x-gateway-provider"] == "second"
        assert (await resp.json())["model"] == "anything-goes"


async def test_completions_and_embeddings_share_the_generic_path(gateway, http):
    gw = await gateway()
    async with http.post(gw.v1 + "/completions", json={"model": "mock-1", "prompt": "say this"}) as resp:
        body = await resp.json()
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"] == "You said: say this"
    async with http.post(gw.v1 + "/embeddings", json={"model": "mock-embed", "input": ["a", "b c"]}) as resp:
        body = await resp.json()
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert len(body["data"][0]["embedding"]) == 16
        assert body["usage"]["prompt_tokens"] == 3


async def test_models_lists_providers_and_aliases(gateway, http):
    gw = await gateway(make_config(models=[{"name": "smart", "targets": ["mock/mock-1"]}]))
    async with http.get(gw.v1 + "/models") as resp:
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert ids == ["mock/mock-1", "mock/mock-embed", "smart"]


async def test_health_needs_no_key_and_readiness_reports_ready(gateway, http):
    gw = await gateway(make_config(auth={"keys": [{"name": "a", "key": "k-123456"}]}))
    async with http.get(gw.url + "/health") as resp:
        assert resp.status == 200
    async with http.get(gw.url + "/health/ready") as resp:
        assert resp.status == 200
    async with http.get(gw.url + "/health/providers") as resp:
        providers = (await resp.json())["providers"]
        assert providers[0]["name"] == "mock" and providers[0]["circuit"] == "closed"


async def error_of(resp: aiohttp.ClientResponse) -> dict:
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]


async def test_bad_input_gets_openai_error_envelopes(gateway, http):
    gw = await gateway(make_config(server={"max_body_bytes": 2048}))
    chat = gw.v1 + "/chat/completions"
    cases = [
        (dict(data=b"{not json"), 400, "invalid_json", None),
        (dict(json=[1, 2]), 400, "invalid_request", None),
        (dict(json={"messages": [{"role": "user", "content": "x"}]}), 400, "invalid_request", "model"),
        (dict(json={"model": "mock-1"}), 400, "invalid_request", "messages"),
        (dict(json={"model": "mock-1", "messages": ["x"]}), 400, "invalid_request", "messages[0]"),
        (dict(json={"model": "mock-1", "messages": [{"role": "user"}], "stream": "yes"}), 400,
         "invalid_request", "stream"),
        (dict(json={"model": "mock-1", "messages": [{"role": "user"}], "stream": 1}), 400,
         "invalid_request", "stream"),
        (dict(json={"model": "mock-1", "messages": [{"role": "user"}], "stream": True, "stream_options": "x"}),
         400, "invalid_request", "stream_options"),
        (dict(json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}), 404, "model_not_found", "model"),
        (dict(data=b'{"model":"mock-1","pad":"' + b"x" * 4096 + b'"}'), 413, "request_too_large", None),
    ]
    for kwargs, status, code, param in cases:
        async with http.post(chat, **kwargs) as resp:
            assert resp.status == status, kwargs
            err = await error_of(resp)
            assert (err["code"], err["param"]) == (code, param), kwargs
    async with http.post(gw.v1 + "/embeddings", json={"model": "mock-embed", "input": "x", "stream": True}) as resp:
        assert resp.status == 400 and (await error_of(resp))["param"] == "stream"
    async with http.get(gw.url + "/nowhere") as resp:
        assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_endpoint"
    async with http.get(chat) as resp:
        assert resp.status == 405 and (await error_of(resp))["code"] == "method_not_allowed"
    # and it keeps serving
    async with http.post(chat, json={"model": "mock-1", "messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status == 200


async def test_chunked_body_over_limit_is_413(gateway, http):
    gw = await gateway(make_config(server={"max_body_bytes": 1024}))

    async def body():
        for _ in range(8):
            yield b"x" * 512

    async with http.post(gw.v1 + "/chat/completions", data=body()) as resp:
        assert resp.status == 413
        assert (await error_of(resp))["code"] == "request_too_large"


async def test_unparsable_http_gets_an_envelope_that_echoes_nothing(gateway):
    gw = await gateway()
    port = int(gw.url.rsplit(":", 1)[1])
    secret = b"sk-proj-" + b"S" * 20000
    oversized = b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + b"\r\n\r\n"
    for payload in (b"GARBAGE\r\n\r\n", oversized):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
        assert orjson.loads(body)["error"]["code"] == "malformed_http_request"
        assert b"SSSS" not in raw
