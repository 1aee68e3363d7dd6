"""A made-up inbound dialect: ``POST /v1/plain`` takes ``{"model", "prompt", "stream"}`` and
answers ``{"text"}``, or a stream of ``data: <text>`` lines ended by ``event: end``; errors are
``{"problem": ...}``. Everything else (auth, routing, limits, metrics) is the gateway's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway import Chunk, Dialect, GatewayError, InvalidRequestError, RequestContext, StreamEncoder
from gateway.operations import CHAT, Operation


class LineEncoder(StreamEncoder):
    def encode(self, batch: list[Chunk] | bytes) -> bytes:
        out = b""
        for chunk in batch:  # type: ignore[union-attr]
            for choice in chunk.obj.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    out += b"data: " + text.encode() + b"\n\n"
        return out

    def end(self) -> bytes:
        return b"event: end\ndata: \n\n"

    def error(self, error: GatewayError) -> bytes:
        return b"event: problem\ndata: " + error.message.encode() + b"\n\n"


class PlainText(Dialect):
    def __init__(self) -> None:
        self.op = Operation("plain", "/v1/plain", True, "messages", input_must_be_list=True,
                            dialect=self, upstream=CHAT)

    def operations(self) -> Iterable[Operation]:
        return (self.op,)

    def accept(self, op: Operation, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        prompt = ctx.body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequestError("'prompt' is required", param="prompt")
        return {"model": ctx.body.get("model"), "stream": bool(ctx.body.get("stream")),
                "messages": [{"role": "user", "content": prompt}]}

    def render(self, op: Operation, ctx: RequestContext, result: dict[str, Any]) -> bytes:
        return orjson.dumps({"text": result["choices"][0]["message"]["content"]})

    def stream_encoder(self, op: Operation, ctx: RequestContext) -> StreamEncoder:
        return LineEncoder()

    def error_response(self, error: GatewayError, headers: Mapping[str, str]) -> web.Response:
        return web.json_response({"problem": error.message}, status=error.status, headers=headers)
