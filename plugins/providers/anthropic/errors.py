"""Anthropic errors → gateway errors, for HTTP error responses and in-stream ``error`` events.

Anthropic's body is ``{"type": "error", "error": {"type", "message"}, "request_id"}``. The status
rules are the core's (``upstream_status_error``); only what is Anthropic-specific lives here:
529 ``overloaded_error`` and 504 ``timeout_error`` have dedicated gateway errors, and an in-stream
error event carries a type but no status, so the type picks the status it would have had.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.adapter import extract_error_message, rate_limit_headers, upstream_status_error
from gateway.errors import GatewayError, UpstreamOverloadedError, UpstreamTimeoutError

# Documented error types and their HTTP statuses (docs.claude.com/en/api/errors).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# A 429 with this code is a monthly spend limit: retrying cannot help until the limit resets.
SPEND_LIMIT_CODE = "enforced_spend_limit_reached"


def error_details(body: bytes) -> tuple[str | None, str | None]:
    """The ``error.type`` and ``error.details.error_code`` of an Anthropic error body, if any."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None  # e.g. Cloudflare's HTML 413
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return None, None
    details = err.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    etype = err.get("type")
    return (etype if isinstance(etype, str) else None), (code if isinstance(code, str) else None)


def build_error(
    provider: str, status: int, etype: str | None, message: str, headers: Mapping[str, str], code: str | None = None
) -> GatewayError:
    if status == 529 or etype == "overloaded_error":
        return UpstreamOverloadedError(f"{provider}: {message}", headers=rate_limit_headers(headers),
                                       provider=provider)
    if status == 504 or etype == "timeout_error":
        return UpstreamTimeoutError(f"{provider}: {message}", provider=provider)
    error = upstream_status_error(provider, status, message, headers)
    if code == SPEND_LIMIT_CODE:
        error.retryable = False
    return error


def parse_error(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """An HTTP error response from the Messages or Models API."""
    etype, code = error_details(body)
    return build_error(provider, status, etype, extract_error_message(body), headers, code)


def stream_error(provider: str, error: Any) -> GatewayError:
    """An ``event: error`` received after HTTP 200 (e.g. ``overloaded_error`` mid-stream)."""
    err = error if isinstance(error, dict) else {}
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else "upstream stream error"
    status = ERROR_STATUS.get(etype or "", 500)
    return build_error(provider, status, etype, f"upstream stream error: {message}", {})
