"""The request wrapper and SSE writer shared by every emulator: recording, faults, auth, pacing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .base import SSE, ApiError, Call, EmulatorState, Fault, RecordedRequest, StreamReply, Vendor

Handler = Callable[[Call], Awaitable[Any]]
_NOT_JSON = object()
CDN_PAGE = ("<html>\r\n<head><title>{s} {r}</title></head>\r\n<body>\r\n<center><h1>{s} {r}</h1></center>\r\n"
            "<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n")


def bearer_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:] if auth[:7].lower() == "bearer " else None


def error_response(vendor: Vendor, err: ApiError) -> web.Response:
    body = err.body if err.body is not None else vendor.error_body(err)
    if isinstance(body, str):
        return web.Response(status=err.status, text=body, headers=err.headers)
    return web.json_response(body, status=err.status, headers=err.headers)


def fault_response(vendor: Vendor, fault: Fault) -> web.Response:
    if fault.kind == "bad_json":
        return web.Response(status=200, text='{"id": "truncated', content_type="application/json")
    if fault.kind == "html_error":
        reason = HTTPStatus(fault.status_code).phrase if fault.status_code in HTTPStatus._value2member_map_ else ""
        return web.Response(status=fault.status_code, text=CDN_PAGE.format(s=fault.status_code, r=reason),
                            content_type="text/html")
    err = ApiError(fault.status_code, fault.message, type=fault.error_type, code=fault.error_type,
                   headers=fault.headers, body=fault.body)
    return error_response(vendor, err)


async def record(request: web.Request, state: EmulatorState) -> Any:
    """Append the request to state.requests; return its parsed JSON body (or _NOT_JSON)."""
    body: Any = None
    raw = ""
    if request.can_read_body:
        raw = await request.text()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _NOT_JSON
    headers = {k.lower(): v for k, v in request.headers.items()}
    state.requests.append(RecordedRequest(request.method, request.path, dict(request.query), headers,
                                          raw if body is _NOT_JSON else body))
    return body


def route(state: EmulatorState, vendor: Vendor, handler: Handler, *, auth: bool = True, json_body: bool = True
          ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a vendor handler: record, apply pre-response faults, authenticate, render result or error.

    `json_body`: a POST must carry a JSON object (handlers then read `call.body` as a dict)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await record(request, state)
        fault = state.take_fault(request.path, streaming=False)
        if fault is not None and fault.kind == "delay_first_byte":
            await asyncio.sleep(fault.seconds)
        elif fault is not None:
            return fault_response(vendor, fault)
        try:
            if auth:
                vendor.authenticate(request, state)
            if json_body and body is _NOT_JSON:
                raise ApiError(400, "We could not parse the JSON body of your request.")
            if json_body and request.method == "POST" and not isinstance(body, dict):
                raise ApiError(400, "Request body must be a JSON object.")
            result = await handler(Call(request, state, body))
        except ApiError as err:
            return error_response(vendor, err)
        if isinstance(result, StreamReply):
            return await write_stream(request, state, vendor, result)
        return web.json_response(result, headers=vendor.success_headers())

    return handle


async def write_stream(request: web.Request, state: EmulatorState, vendor: Vendor,
                       reply: StreamReply) -> web.StreamResponse:
    """Send `reply.events` as SSE, honouring chunk_delay, release and the next stream fault.

    Relies on handler cancellation (aiohttp's TestServer enables it) to notice a client that leaves while
    the stream is paused or stalled; the except clause then counts the disconnect.
    """
    fault = state.take_fault(request.path, streaming=True)
    events = reply.events
    if fault is not None and fault.kind == "no_terminal":
        events, fault = [e for e in events if not e.terminal], None
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       **vendor.success_headers(), **reply.headers})
    await resp.prepare(request)
    state.streams_opened += 1
    try:
        if not await _send(request, resp, state, vendor, events, fault):
            await resp.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        state.client_disconnects += 1
        state.client_closed.set()
        raise
    finally:
        state.streams_closed += 1
        state.stream_closed.set()
    return resp


async def _send(request: web.Request, resp: web.StreamResponse, state: EmulatorState, vendor: Vendor,
                events: list[SSE], fault: Fault | None) -> bool:
    """Write the events, firing `fault` after `fault.after` data events. True if the connection was cut."""
    sent = 0
    for ev in [*events, None]:  # None: a slot after the last event, so a late fault still fires
        if fault is not None and (ev is None or sent >= fault.after):
            if fault.kind == "drop_mid_stream":
                assert request.transport is not None
                request.transport.close()  # flushes what was written, then FIN with no chunked terminator
                return True
            if await _fire(resp, vendor, fault):
                return False
            fault = None
        if ev is None:
            break
        await resp.write(ev.encode())
        if ev.comment is None:  # comments (keep-alives) do not count as events
            sent += 1
            await _pace(state, sent)
    return False


async def _fire(resp: web.StreamResponse, vendor: Vendor, fault: Fault) -> bool:
    """Apply an in-stream fault; True when the stream ends with it."""
    if fault.kind == "stall":
        await asyncio.Future()  # until the client gives up and the handler is cancelled
    if fault.kind == "bad_sse":
        await resp.write(b"data: {not valid json\n\n")
        return False
    for event in vendor.stream_error(ApiError(fault.status_code, fault.message, type=fault.error_type)):
        await resp.write(event.encode())
    return True


async def _pace(state: EmulatorState, sent: int) -> None:
    if sent == 1:
        state.stream_started.set()
        if state.release is not None:
            await state.release.wait()
    if state.chunk_delay:
        await asyncio.sleep(state.chunk_delay)


def add_routes(app: web.Application, state: EmulatorState, vendor: Vendor,
               table: Iterable[tuple[str, str, Handler]], *, public: Iterable[str] = ()) -> web.Application:
    """Register (method, path, handler) rows; paths listed in `public` skip authentication."""
    open_paths = set(public)
    for method, path, handler in table:
        app.router.add_route(method, path, route(state, vendor, handler, auth=path not in open_paths))
    # Last: any other path is recorded (so tests can prove a route was never called) and answered
    # with the vendor's own 404 shape instead of aiohttp's plain-text one.
    app.router.add_route("*", "/{tail:.*}", route(state, vendor, _unknown_route, auth=False, json_body=False))
    return app


async def _unknown_route(call: Call) -> Any:
    raise ApiError(404, f"Invalid URL ({call.request.method} {call.request.path})")
