"""One structured access-log line per API request, on the logger ``llm_gateway.access`` at INFO.

Off by default, like aiohttp's own access log: metrics and traces carry the same information, and a
log line per request is the largest per-request cost a gateway can pay for nothing. Turn it on with
``access_log: {enabled: true}``; only then is a request hook registered at all, and below the
logger's level nothing is formatted.

The line is ``key=value`` pairs (values with spaces, quotes or control characters JSON-quoted, so
a client cannot forge a line); the same pairs travel as the record's ``fields``, which the
``json`` log format writes as top-level keys. Text a client chose (the model name for an unknown
model, its ``x-request-id``) is cut to a bounded length; the redaction filter masks secrets in
both forms. Fields: ``request_id principal operation provider model stream status error_type
latency_ms ttft_ms prompt_tokens completion_tokens cache attempts cost_usd`` (``cost_usd`` from the
governance plugin's pricing, ``-`` when unpriced or governance is off).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import Outcome, RequestContext, hookimpl
from gateway.config import GatewayConfig
from gateway.keys import GATEWAY

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
        "cost_usd": outcome.cost_usd,
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


class AccessLogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"access_log": AccessLogConfig}


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    settings = config.section("access_log") or AccessLogConfig()
    if settings.enabled:
        app[GATEWAY].pm.register(AccessLogger(), name="access_log.requests")


class AccessLogger:
    """The per-request hook, registered only when the access log is enabled."""

    @hookimpl
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        entry = fields(ctx, outcome)
        log.info("%s", line(entry), extra={"fields": entry})
