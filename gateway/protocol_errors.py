"""Errors aiohttp answers below the application (unparsable request line or headers, headers over
the size limit, an exception escaping a handler) rendered as OpenAI envelopes too, never as text
or HTML pages — and without echoing request bytes, which may hold a key."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.errors import GatewayError, InvalidRequestError

log = logging.getLogger("llm_gateway.server")


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


class EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = EnvelopeRequestHandler
        return handler


async def make_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` (already set up) whose protocol-level errors are JSON envelopes."""
    runner = web.AppRunner(app, handler_cancellation=True, **kwargs)
    await runner.setup()
    assert runner.server is not None
    runner.server.__class__ = EnvelopeServer
    return runner
