"""A hook plugin: tells the client, in a response header, how many tokens the gateway counted."""

from __future__ import annotations

from typing import Any

from gateway import RequestContext, hookimpl


@hookimpl
def gateway_response(ctx: RequestContext, response: dict[str, Any]) -> None:
    tokens = ctx.usage.total_tokens if ctx.usage else 0
    ctx.response_headers["x-acme-tokens"] = str(tokens)
