"""Per client connection, below the application.

* Errors aiohttp answers itself (unparsable request line or headers, headers over the size limit,
  an exception escaping a handler) are rendered as OpenAI envelopes too, never as text or HTML
  pages, and without echoing request bytes, which may hold a key.
* Every accepted TCP connection gets ``TCP_USER_TIMEOUT`` = ``server.client_send_timeout_s``: the
  kernel drops a client that stops acknowledging what we send (a stalled stream reader), however
  little is queued. Set once per connection, not per response: a stream costs no extra syscalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.errors import GatewayError, InvalidRequestError
from gateway.keys import GATEWAY

log = logging.getLogger("llm_gateway.server")
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only


class EnvelopeRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        # Not the parent's logging: aiohttp's parse errors quote the raw header line, which may
        # hold a key, and this path must not depend on the redaction plugin being enabled.
        log.warning("malformed HTTP request (%s) answered %d", type(exc).__name__ if exc else "error", status)
        if request.writer is not None and request.writer.output_size > 0:
            raise ConnectionError("response already sent; cannot send the error response")
        if status == 400:
            error: GatewayError = InvalidRequestError(
                "The HTTP request could not be parsed (malformed request line or headers, "
                "or headers over the size limit).", code="malformed_http_request")
        else:
            error = GatewayError("Internal gateway error.", status=status)
        resp = web.Response(status=status, body=error.to_json(), content_type="application/json")
        resp.force_close()
        return resp


class GatewayServer(web.Server):
    send_timeout_ms: int | None = None

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = EnvelopeRequestHandler
        return handler

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self.send_timeout_ms is not None:
            set_send_timeout(transport, self.send_timeout_ms)


def set_send_timeout(transport: asyncio.BaseTransport, timeout_ms: int) -> None:
    sock = transport.get_extra_info("socket")
    if TCP_USER_TIMEOUT is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # the client already left
        sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, timeout_ms)


async def make_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` (already set up) with the per-connection behaviour above."""
    runner = web.AppRunner(app, handler_cancellation=True, **kwargs)
    await runner.setup()
    assert runner.server is not None
    runner.server.__class__ = GatewayServer
    gw = app.get(GATEWAY)
    if gw is not None:
        runner.server.send_timeout_ms = int(gw.config.server.client_send_timeout_s * 1000)
    return runner
