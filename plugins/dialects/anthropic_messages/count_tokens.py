"""``POST /v1/messages/count_tokens``: the vendor's own count where the model's first target
serves the Messages API natively, otherwise an estimate that is never below the input tokens the
vendor then reports for the same request.

Why the estimate is an upper bound: byte-level BPE tokenizers (OpenAI, Anthropic, Llama, Cohere)
never make a token of less than one byte, so a text has at most as many tokens as UTF-8 bytes.
The estimate counts the bytes of the whole translated request as JSON (every text, plus quotes,
keys and punctuation, which outnumber the few template tokens a chat format adds per message),
plus 1,600 per image (more than any vendor charges for one image at the accepted sizes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.context import Outcome, RequestContext
from gateway.dialect import speaks, with_model
from gateway.errors import GatewayError
from gateway.handler import authenticate, finish_outcome, read_json, request_id
from gateway.relay import JSONResponse
from plugins.dialects.anthropic_messages.request import check, to_chat
from plugins.dialects.anthropic_messages.response import error_response

if TYPE_CHECKING:
    from gateway.dialect import Dialect
    from gateway.operations import Operation
    from gateway.reload import Reloader
    from gateway.runtime import Gateway

IMAGE_TOKENS = 1600
FORWARDED = ("anthropic-version", "anthropic-beta")


def estimate(chat: dict[str, Any]) -> int:
    messages = chat.get("messages") or []
    images = sum(1 for m in messages if isinstance(m.get("content"), list)
                 for p in m["content"] if p.get("type") == "image_url")
    size = len(orjson.dumps(messages)) + len(orjson.dumps(chat.get("tools") or []))
    return size + IMAGE_TOKENS * images


async def count_tokens(request: web.Request, *, live: Reloader, dialect: Dialect, op: Operation) -> web.StreamResponse:
    """Authenticated, permitted and rate-limited like any request (``op`` names it in metrics and
    logs); the plugins see the canonical chat body. Runs on one configuration generation."""
    gw = live.enter()
    try:
        return await count_on(gw, request, dialect, op)
    finally:
        live.leave(gw)


async def count_on(gw: Gateway, request: web.Request, dialect: Dialect, op: Operation) -> web.StreamResponse:
    ctx = RequestContext(request, op, request_id(request), gw.app)
    outcome = Outcome(status=200)
    headers = {"x-request-id": ctx.request_id}
    try:
        await authenticate(gw, ctx)
        body = await read_json(request, gw.config.server.max_body_bytes)
        check(body, needs_max_tokens=False)
        ctx.body, _ = to_chat(body)
        ctx.model = body["model"]
        ctx.targets = gw.router.resolve(body["model"])
        if gw.on_request_received:
            await gw.hooks.all("gateway_request_received", ctx=ctx)
        target = ctx.targets[0]
        if not speaks(target.provider, dialect.name):
            return JSONResponse(orjson.dumps({"input_tokens": estimate(ctx.body)}), headers)
        ctx.provider = target.provider.name
        sent = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        upstream = target.provider.adapter.native_request(
            "/messages/count_tokens", with_model(await request.read(), body, target.model), sent)
        answer = await target.provider.transport.send(upstream)
        if answer.status >= 400:
            raise target.provider.adapter.parse_error(answer.status, answer.body, answer.headers)
        return JSONResponse(answer.body, headers)
    except GatewayError as exc:
        outcome.status, outcome.error_type, outcome.error_code = exc.status, exc.type, exc.code
        return error_response(gw.scrubber.scrub_error(exc), headers)
    finally:
        if gw.on_request_finished:
            await gw.hooks.all_safe("gateway_request_finished", ctx=ctx, outcome=finish_outcome(ctx, outcome))
