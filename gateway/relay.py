"""Writing responses to the client: JSON bodies, error envelopes, and SSE relayed chunk by chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from gateway.adapter import Chunk
from gateway.errors import GatewayError

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def json_response(body: Any, headers: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


class JSONResponse(web.StreamResponse):
    """A complete JSON answer to a POST, sent with its headers in one write. Leaner per request
    than ``web.Response``, whose body handling (payload lookup, compression, content-type
    parsing) a ready-made JSON body does not need."""

    _send_headers_immediately = False

    def __init__(self, body: bytes, headers: Mapping[str, str], status: int = 200) -> None:
        super().__init__(status=status, headers={
            **headers, "Content-Type": "application/json", "Content-Length": str(len(body))})
        self._json = body

    async def write_eof(self, data: bytes = b"") -> None:
        body, self._json = self._json, b""
        await super().write_eof(body + data if data else body)


def error_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> web.Response:
    # The gateway's own headers (x-request-id, its x-ratelimit-*) win over forwarded vendor ones.
    merged = {**error.headers, **(headers or {})}
    return web.Response(
        body=error.to_json(), status=error.status, headers=merged, content_type="application/json"
    )


def error_event(error: GatewayError) -> bytes:
    """The SSE form of an error once streaming began (the OpenAI SDK raises on it)."""
    return b"data: " + error.to_json() + b"\n\n"


class SSEResponse(EventSourceResponse):
    """aiohttp-sse's event-stream response (its headers, ``: ping`` comment, no compression), with
    the per-stream costs taken out of the hot path:

    * the headers leave in the same write as the first chunk (one syscall fewer per stream);
    * the stalled-client bound (``TCP_USER_TIMEOUT``) is set once per connection by the server
      (``gateway.connections``), not read, set and restored around every stream;
    * keep-alive pings: one timer per stream that fires every ``ping_interval``; only a stream
      that sent nothing for a whole interval starts a task to write the ping. aiohttp-sse's own
      ping task costs a task start and a cancellation per stream, and pings busy streams too.
    """

    _send_headers_immediately = False

    def __init__(self, headers: Mapping[str, str], *, ping_interval: float, ping: bytes = PING) -> None:
        super().__init__(headers=headers, sep="\n", allow_all_methods=True, send_timeout=None,
                         ping_interval=ping_interval)
        self._ping_bytes = ping  # the stream's own keep-alive (a comment, or a dialect's ping event)
        self._timer: asyncio.TimerHandle | None = None
        self._sent_at_tick = 0

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        writer = await web.StreamResponse.prepare(self, request)
        self._timer = asyncio.get_running_loop().call_later(self._ping_interval, self._tick)
        return writer

    def _tick(self) -> None:
        writer = self._payload_writer
        if writer is None:
            return
        sent = writer.output_size
        if sent == self._sent_at_tick and (self._ping_task is None or self._ping_task.done()):
            self._ping_task = asyncio.ensure_future(self._ping_once())
        self._sent_at_tick = sent
        self._timer = asyncio.get_running_loop().call_later(self._ping_interval, self._tick)

    async def _ping_once(self) -> None:
        try:
            await self.write(self._ping_bytes)
        except (ConnectionResetError, RuntimeError):  # gone, or the stream already ended
            self.stop_pinging()
            return
        if self._payload_writer is not None:
            self._sent_at_tick = self._payload_writer.output_size  # a ping is not traffic

    async def close_stream(self, tail: bytes = b"") -> None:
        """The last bytes and the end of the chunked body in one write."""
        self.stop_pinging()
        await self.write_eof(tail)

    def stop_pinging(self) -> None:
        """Idempotent; also for streams that ended by an error or a client that left. A running
        ping task is cancelled, not awaited: it ends at the next loop turn on its own."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ping_task is not None and not self._ping_task.done():
            self._ping_task.cancel()


async def flatten(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Chunk]:
    """One chunk at a time over the first batch and the rest (only built for stream wrappers)."""
    for chunk in first:
        yield chunk
    async for batch in rest:
        for chunk in batch:
            yield chunk
