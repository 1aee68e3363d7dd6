"""The one generic request path for chat, completions and embeddings."""

from __future__ import annotations

import asyncio
import logging
import time
from random import getrandbits
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web

from gateway.adapter import encode_chunks
from gateway.context import Outcome, RequestContext, Usage
from gateway.dialect import StreamEncoder
from gateway.errors import (
    AuthenticationError,
    BodyTooLargeError,
    GatewayError,
    InvalidJSONError,
    InvalidRequestError,
    harms_health,
)
from gateway.hookcall import awaitable
from gateway.relay import JSONResponse, SSEResponse, error_response, flatten, json_response
from gateway.replay import response_to_chunks

if TYPE_CHECKING:
    from gateway.adapter import StreamTranslator
    from gateway.dispatch import UpstreamStream
    from gateway.operations import Operation
    from gateway.reload import Reloader
    from gateway.runtime import Gateway, ShortCircuit

log = logging.getLogger("llm_gateway.handler")
R = TypeVar("R", bound=web.StreamResponse)
CHAT_STREAM = StreamEncoder()  # Chat Completions' own stream framing


def request_id(request: web.Request) -> str:
    given = request.headers.get("x-request-id")
    if given and len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    # Unique, not secret: each process's Mersenne Twister (seeded from os.urandom at start-up,
    # re-seeded after a fork) instead of a getrandom() system call per request.
    return f"req_{getrandbits(64):016x}"


async def authenticate(gw: Gateway, ctx: RequestContext) -> None:
    if gw.on_authenticate:
        ctx.principal = await gw.hooks.first("gateway_authenticate", ctx=ctx)
    require_principal(gw, ctx)


def require_principal(gw: Gateway, ctx: RequestContext) -> None:
    if ctx.principal is None and gw.auth_required:
        raise AuthenticationError(
            "Missing API key: send it in the Authorization header as a Bearer token.", code="missing_api_key"
        )


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"Request body is larger than the limit of {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLargeError(f"Request body is larger than the limit of {limit} bytes") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJSONError("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return body


def validate(op: Operation, ctx: RequestContext) -> None:
    """Check only what the gateway itself relies on; the vendor validates the rest."""
    body = ctx.body
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
    value = body.get(op.input_field)
    if value is None:
        raise InvalidRequestError(f"'{op.input_field}' is required.", param=op.input_field)
    if op.input_must_be_list:
        if not isinstance(value, list) or not value:
            raise InvalidRequestError(f"'{op.input_field}' must be a non-empty array.", param=op.input_field)
        for i, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("role"), str):
                raise InvalidRequestError(
                    f"'{op.input_field}[{i}]' must be an object with a 'role'.", param=f"{op.input_field}[{i}]"
                )
    stream = body.get("stream", False)
    if type(stream) not in (bool, type(None)):  # not `in (True, False)`: 1 == True
        raise InvalidRequestError("'stream' must be a boolean.", param="stream")
    if not isinstance(body.get("stream_options") or {}, dict):
        raise InvalidRequestError("'stream_options' must be an object.", param="stream_options")
    if stream and not op.streamable:
        raise InvalidRequestError(f"{op.path} does not support streaming.", param="stream")
    ctx.model = model
    ctx.stream = bool(stream)


def response_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {"x-request-id": ctx.request_id, **ctx.response_headers}
    if ctx.provider:
        headers["x-gateway-provider"] = ctx.provider
    return headers


async def handle(request: web.Request, *, live: Reloader, op: Operation) -> web.StreamResponse:
    # The configuration generation this request runs on, to its end, whatever reloads happen.
    gw = live.current
    gw.in_flight += 1
    ctx = RequestContext(request, op, request_id(request), gw.app)
    outcome = Outcome(status=200)
    try:
        if gw.on_request_started:
            gw.pm.hook.gateway_request_started(ctx=ctx)
        # The hooks through Hooks.*_now/run: no coroutine of ours unless a plugin must wait.
        if gw.on_authenticate:
            principal = gw.hooks.first_now("gateway_authenticate", ctx)
            ctx.principal = await principal if principal is not None and awaitable(principal) else principal
        require_principal(gw, ctx)
        ctx.body = await read_json(request, gw.config.server.max_body_bytes)
        if op.dialect is not None:  # the client's own wire format → the canonical chat body
            ctx.body = op.dialect.accept(op, ctx, await request.read())
        validate(op, ctx)
        ctx.targets = gw.router.resolve(ctx.model)  # type: ignore[arg-type]
        if gw.on_request_received and (pending := gw.hooks.run("gateway_request_received", ctx)):
            await pending
        if gw.on_before_upstream:
            short = gw.hooks.first_now("gateway_before_upstream", ctx)
            if short is not None and awaitable(short):
                short = await short
            if short is not None:
                return await respond_short(gw, ctx, short, outcome)
        if ctx.stream:
            wrappers = gw.stream_wrappers(ctx)
            # A dialect's stream is re-encoded from canonical chunks: no raw chat bytes for it.
            upstream = await gw.dispatcher.open_stream(ctx, raw_ok=not wrappers and op.dialect is None)
            return await stream(gw, ctx, upstream, wrappers, outcome)
        result = await gw.dispatcher.send(ctx)
        ctx.usage = Usage.from_openai(result.get("usage"))
        if gw.on_response:
            ctx.settle_attempt()
            if pending := gw.hooks.run("gateway_response", ctx, result):
                await pending
            ctx.response_bytes = None  # a plugin may have changed it
        if op.dialect is not None:
            body = op.dialect.render(op, ctx, result)
        else:
            body = ctx.response_bytes or orjson.dumps(result)
        return await send_now(ctx, JSONResponse(body, response_headers(ctx)), outcome)
    except GatewayError as exc:
        return await send_now(ctx, await fail(gw, ctx, exc, outcome), outcome)
    except asyncio.CancelledError:
        outcome.status, outcome.error_type = 499, "client_closed"
        raise
    except Exception:
        log.exception("unhandled error in request %s", ctx.request_id)
        return await fail(gw, ctx, GatewayError(f"Internal gateway error (request id {ctx.request_id})."), outcome)
    finally:
        ctx.settle_attempt()
        if gw.on_request_finished and (pending := gw.hooks.run_safe(
                "gateway_request_finished", ctx, finish_outcome(ctx, outcome))):
            await pending
        gw.in_flight -= 1
        if not gw.in_flight and gw is not live.current:
            live.left(gw)  # the last request of a superseded generation: retire it


async def send_now(ctx: RequestContext, resp: R, outcome: Outcome) -> R:
    """Send a complete response before the attempt is settled and the ``gateway_request_finished``
    hooks run (metrics, logs, spans), so the client's latency does not include them."""
    try:
        await resp.prepare(ctx.request)
        await resp.write_eof()
    except ConnectionResetError:
        outcome.status, outcome.error_type = 499, "client_closed"
    ctx.settle_attempt()
    return resp


def finish_outcome(ctx: RequestContext, outcome: Outcome) -> Outcome:
    outcome.provider = ctx.provider
    outcome.model = ctx.target.model if ctx.target else ctx.model
    outcome.usage = ctx.usage
    outcome.stream = ctx.stream
    outcome.cache = ctx.cache
    outcome.attempts = ctx.attempts
    outcome.latency_s = time.perf_counter() - ctx.started
    if ctx.first_chunk_at is not None:
        outcome.ttft_s = ctx.first_chunk_at - ctx.started
    return outcome


async def fail(gw: Gateway, ctx: RequestContext, error: GatewayError, outcome: Outcome) -> web.Response:
    ctx.settle_attempt()  # e.g. a response hook failed: the attempt itself had succeeded
    gw.scrubber.scrub_error(error)  # plugin errors and echoed input too, not only vendor text
    outcome.status, outcome.error_type, outcome.error_code = error.status, error.type, error.code
    if gw.on_error:
        await gw.hooks.all_safe("gateway_error", ctx=ctx, error=error)
    if ctx.op is not None and ctx.op.dialect is not None:
        return ctx.op.dialect.error_response(error, response_headers(ctx))
    return error_response(error, response_headers(ctx))


async def respond_short(gw: Gateway, ctx: RequestContext, short: ShortCircuit, outcome: Outcome) -> web.StreamResponse:
    ctx.usage = Usage.from_openai(short.body.get("usage"))
    ctx.response_headers.update(short.headers)
    op = ctx.op
    if not ctx.stream:
        if op is not None and op.dialect is not None:
            return JSONResponse(op.dialect.render(op, ctx, short.body), response_headers(ctx))
        return json_response(short.body, response_headers(ctx))
    include_usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))
    encoder = encoder_for(ctx)
    resp = new_sse_response(gw, ctx, encoder)
    try:
        await resp.prepare(ctx.request)
        ctx.first_chunk_at = time.perf_counter()
        await resp.write(encoder.encode(list(response_to_chunks(short.body, include_usage))))
        await resp.close_stream(encoder.end())
    except ConnectionResetError:
        outcome.status, outcome.error_type = 499, "client_closed"
    finally:
        resp.stop_pinging()
    return resp


def encoder_for(ctx: RequestContext) -> StreamEncoder:
    op = ctx.op
    return op.dialect.stream_encoder(op, ctx) if op is not None and op.dialect is not None else CHAT_STREAM


def new_sse_response(gw: Gateway, ctx: RequestContext, encoder: StreamEncoder = CHAT_STREAM) -> SSEResponse:
    return SSEResponse(response_headers(ctx), ping_interval=gw.config.server.sse_ping_interval_s, ping=encoder.ping)


async def stream(
    gw: Gateway, ctx: RequestContext, upstream: UpstreamStream, wrappers: list[Any], outcome: Outcome
) -> web.StreamResponse:
    """Relay chunks as they arrive. Past this point errors become one SSE error event."""
    encoder = encoder_for(ctx)
    resp = new_sse_response(gw, ctx, encoder)
    chunks = upstream.rest
    tail: list[bytes] = []
    encode = encode_chunks if encoder is CHAT_STREAM else encoder.encode  # chat: no call layer
    try:
        await resp.prepare(ctx.request)
        # A natively relayed dialect stream has no canonical chunks for wrappers to see.
        if wrappers and not upstream.translator.raw:
            ctx.settle_attempt()  # plugin code sees the chunks: it may read the attempt's outcome
            chunks = flatten(upstream.first, upstream.rest)
            for wrap in wrappers:
                chunks = wrap(chunks)
            async for chunk in chunks:
                if ctx.first_chunk_at is None:
                    ctx.first_chunk_at = time.perf_counter()
                await resp.write(encode([chunk]))
        else:
            translator = upstream.translator
            if upstream.first:
                ctx.first_chunk_at = time.perf_counter()
                if data := outgoing(translator, encode(upstream.first), tail):
                    await resp.write(data)
                    ctx.settle_attempt()  # else the whole stream goes out at once, settled after it
            async for batch in chunks:
                if data := outgoing(translator, encode(batch), tail):
                    await resp.write(data)
        ctx.usage = Usage.from_openai(upstream.translator.usage)
        tail.append(encoder.end())
        await resp.close_stream(b"".join(tail))
    except ConnectionResetError:
        outcome.status, outcome.error_type = 499, "client_closed"
    except GatewayError as exc:
        await stream_failed(gw, ctx, resp, exc, outcome, encoder)
    except Exception:
        # Headers may be out already: a second HTTP response must never follow.
        log.exception("unhandled error while streaming request %s", ctx.request_id)
        await stream_failed(gw, ctx, resp, GatewayError(
            f"Internal gateway error (request id {ctx.request_id})."), outcome, encoder)
    finally:
        resp.stop_pinging()
        await aclose(chunks)
        if chunks is not upstream.rest:
            await aclose(upstream.rest)
    return resp


def outgoing(translator: StreamTranslator, data: bytes, tail: list[bytes]) -> bytes:
    """A batch's bytes to write now; or, once the upstream has finished, nothing: the batch is
    held for the last write, with the stream's end and the end of the body. A plain function,
    not a coroutine around the write: two coroutines fewer per upstream read."""
    if translator.done:
        tail.append(data)
        return b""
    return data


async def stream_failed(
    gw: Gateway, ctx: RequestContext, resp: SSEResponse, error: GatewayError, outcome: Outcome,
    encoder: StreamEncoder = CHAT_STREAM,
) -> None:
    # The attempt's success is recorded before the failure that followed it (still pending when
    # the first bytes were held for the last write and ending the stream failed).
    ctx.settle_attempt()
    gw.scrubber.scrub_error(error)
    outcome.status, outcome.error_type, outcome.error_code = error.status, error.type, error.code
    if ctx.target is not None and harms_health(error):
        ctx.target.provider.breaker.record(False)
    if gw.on_error:
        await gw.hooks.all_safe("gateway_error", ctx=ctx, error=error)
    if not resp.prepared:
        return
    try:
        # No [DONE]: the stream ended abnormally, and the error event says why.
        await resp.close_stream(encoder.error(error))
    except (ConnectionResetError, RuntimeError):
        outcome.status, outcome.error_type = 499, "client_closed"


async def aclose(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
