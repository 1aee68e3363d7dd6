"""Cohere errors → gateway errors.

Cohere answers failures with a flat ``{"id"?: "…", "message": "…"}`` body; the status decides the
gateway error (``upstream_status_error``: 400/404/422/429 pass through, 401/403 and 5xx become 502; 504 is a
timeout).
A generation can also fail *inside* a 200 answer, through its ``finish_reason`` (``ERROR``,
``TIMEOUT``): ``generation_error`` turns that into the matching ``UpstreamError``.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.adapter import extract_error_message, upstream_status_error
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError

# Lower-cased finish reasons that mean "no usable answer" (the older v2 spelling included).
ERROR_REASONS = frozenset({"error", "timeout", "error_limit"})


def parse_error(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """A Cohere error status; its ``message`` is kept, rate-limit headers (Retry-After) forwarded.
    Cohere's 504 says its own generation timed out, which the gateway reports as a timeout too."""
    message = extract_error_message(body)
    if status == 504:
        return UpstreamTimeoutError(f"{provider}: {message}", provider=provider)
    return upstream_status_error(provider, status, message, headers)


def generation_error(provider: str, reason: str, detail: object = None) -> UpstreamError:
    """The error for a finish reason in ``ERROR_REASONS``; ``detail`` is Cohere's ``error`` text.

    Marked retryable: a failed generation is a server-side fault, and the dispatcher only retries
    while nothing has reached the client yet.
    """
    message = detail if isinstance(detail, str) and detail else f"generation ended with finish_reason {reason}"
    if reason.lower() == "timeout":
        return UpstreamTimeoutError(f"{provider}: {message}", provider=provider)
    return UpstreamError(f"{provider}: {message}", provider=provider, retryable=True)
