"""One structured access-log line per API request, on the logger ``llm_gateway.access`` at INFO.

On by default (aiohttp's own access log, ``server.access_log``, is off by default and knows nothing
of providers, tokens or time to first token). Turn it off with ``plugins: {disabled: [access_log]}``
or ``logging: {loggers: {llm_gateway.access: warning}}``; below the logger's level nothing is
formatted at all.

The line is ``key=value`` pairs (values with spaces, quotes or control characters JSON-quoted, so
a client cannot forge a line); the same pairs travel as the record's ``fields``, which the
``json`` log format writes as top-level keys. Text a client chose (the model name for an unknown
model, its ``x-request-id``) is cut to a bounded length; the redaction filter masks secrets in
both forms. Fields: ``request_id principal operation provider model stream status error_type
latency_ms ttft_ms prompt_tokens completion_tokens cache attempts``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from gateway import Outcome, RequestContext, hookimpl

log = logging.getLogger("llm_gateway.access")

MAX_VALUE_LEN = 200
_PLAIN = re.compile(r'[^\s"=\\]+')  # shown bare; anything else JSON-quoted


def fields(ctx: RequestContext, outcome: Outcome) -> dict[str, Any]:
    usage = outcome.usage
    return {
        "request_id": ctx.request_id,
        "principal": ctx.principal.name if ctx.principal is not None else None,
        "operation": ctx.op.name if ctx.op is not None else None,
        "provider": outcome.provider,
        "model": outcome.model[:MAX_VALUE_LEN] if outcome.model else None,
        "stream": outcome.stream,
        "status": outcome.status,
        "error_type": outcome.error_type,
        "latency_ms": round(outcome.latency_s * 1000, 1),
        "ttft_ms": None if outcome.ttft_s is None else round(outcome.ttft_s * 1000, 1),
        "prompt_tokens": usage.prompt_tokens if usage is not None else None,
        "completion_tokens": usage.completion_tokens if usage is not None else None,
        "cache": outcome.cache,
        "attempts": outcome.attempts,
    }


def render(value: Any) -> str:
    if value is None:
        return "-"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int or type(value) is float:
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.isprintable():
        return text
    return orjson.dumps(text).decode()


def line(entry: dict[str, Any]) -> str:
    return " ".join([f"{key}={render(value)}" for key, value in entry.items()])


@hookimpl
def gateway_request_finished(ctx: RequestContext, outcome: Outcome) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    entry = fields(ctx, outcome)
    log.info("%s", line(entry), extra={"fields": entry})
