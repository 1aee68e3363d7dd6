"""A tiny OpenAI-shaped upstream that misbehaves on request, echoing the key it was sent.

The requested model picks the behaviour: ``status-<code>`` answers that status with the key in the
error message, ``bad-json`` answers 200 with a body that is not JSON, ``hang`` never answers until
``release`` is set, ``midstream`` streams one chunk and then an error event, anything else streams or
answers normally. ``GET /v1/models`` is a 401 that echoes the key (what a health check hits).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial

import orjson
from aiohttp import web


@dataclass
class StubUpstream:
    runner: web.AppRunner
    url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    keys_seen: list[str] = field(default_factory=list)

    async def close(self) -> None:
        self.release.set()
        await self.runner.cleanup()


def presented_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def chunk(model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    obj = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})


async def chat(stub: StubUpstream, request: web.Request) -> web.StreamResponse:
    key = presented_key(request)
    stub.keys_seen.append(key)
    body = await request.json()
    model = body.get("model", "")
    if model.startswith("status-"):
        status = int(model.removeprefix("status-"))
        return web.Response(status=status, body=error_body(f"Incorrect API key provided: {key}"),
                            content_type="application/json")
    if model == "bad-json":
        return web.Response(body=f"<html>not json, key {key}".encode(), content_type="application/json")
    if model == "hang":
        await stub.release.wait()
    if body.get("stream"):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(chunk(model, {"role": "assistant", "content": "hi"}))
        if model == "midstream":
            await resp.write(b"data: " + error_body(f"stream broke for key {key}") + b"\n\n")
        else:
            await resp.write(chunk(model, {}, "stop") + b"data: [DONE]\n\n")
        return resp
    return web.json_response({
        "id": "x", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    })


async def models(request: web.Request) -> web.Response:
    return web.Response(status=401, body=error_body(f"Incorrect API key provided: {presented_key(request)}"),
                        content_type="application/json")


async def start_stub() -> StubUpstream:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    stub = StubUpstream(runner)
    app.router.add_post("/v1/chat/completions", partial(chat, stub))
    app.router.add_get("/v1/models", models)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    return stub


def stub_provider(name: str, url: str, key: str, models: list[str], **extra: object) -> dict[str, object]:
    """A provider entry for the stub: no retries, short timeouts, health checks off unless asked."""
    return {
        "name": name, "type": "openai", "base_url": url, "api_key": key, "models": models,
        "retry": {"attempts": 0}, "timeouts": {"first_byte_s": 0.5, "connect_s": 1},
        "health_check": {"enabled": False}, **extra,
    }
