"""The gateway's error taxonomy and the only renderer of the OpenAI error envelope.

::

    GatewayError                   500 api_error
    ├─ InvalidRequestError         400 invalid_request_error
    │  ├─ InvalidJSONError         400 code=invalid_json
    │  ├─ BodyTooLargeError        413 code=request_too_large
    │  ├─ ModelNotFoundError       404 code=model_not_found
    │  └─ UnsupportedOperation     400 code=unsupported_operation
    ├─ AuthenticationError         401 code=invalid_api_key
    ├─ PermissionDeniedError       403 code=model_not_allowed
    ├─ RateLimitError              429 code=rate_limit_exceeded (+ Retry-After)
    ├─ ServiceUnavailableError     503 (draining, circuit open, no healthy target)
    └─ UpstreamError               502 (names the provider, never its URL, headers or key)
       ├─ UpstreamStatusError      vendor 400/404/409/413/422/429 keep their status; 401/403 and 5xx -> 502
       ├─ UpstreamOverloadedError  503 (e.g. a vendor's "overloaded" status), retryable
       ├─ UpstreamTimeoutError     504
       ├─ UpstreamConnectionError  502
       └─ UpstreamProtocolError    502 (bad JSON or SSE from the vendor)

``retryable`` says whether another attempt (same or next target) may succeed; the dispatcher
only retries before the first byte went to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = "internal_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        provider: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if retryable is not None:
            self.retryable = retryable
        self.headers: dict[str, str] = dict(headers or {})
        self.provider = provider

    def to_envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_envelope())


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJSONError(InvalidRequestError):
    code = "invalid_json"


class BodyTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class ModelNotFoundError(InvalidRequestError):
    status = 404
    code = "model_not_found"


class UnsupportedOperation(InvalidRequestError):
    code = "unsupported_operation"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(max(1, int(retry_after + 0.999))))


class ServiceUnavailableError(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"
    retryable = True


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamStatusError(UpstreamError):
    """A vendor answered with an error status; the vendor's message is kept."""

    # Statuses that describe the client's request and so pass through unchanged.
    PASSTHROUGH = frozenset({400, 404, 409, 413, 415, 422, 429})

    def __init__(self, message: str, *, upstream_status: int, **kw: Any) -> None:
        kw.setdefault("status", upstream_status if upstream_status in self.PASSTHROUGH else 502)
        if upstream_status in (401, 403):
            kw.setdefault("code", "upstream_auth_error")
            kw.setdefault("type", "upstream_error")
        elif upstream_status == 429:
            kw.setdefault("type", "rate_limit_error")
            kw.setdefault("code", "rate_limit_exceeded")
        elif upstream_status in self.PASSTHROUGH:
            kw.setdefault("type", "invalid_request_error")
        kw.setdefault("retryable", upstream_status == 429 or upstream_status >= 500)
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        if self.status == 429 and not any(k.lower() == "retry-after" for k in self.headers):
            self.headers["Retry-After"] = "1"  # every 429 tells the client when to come back


class UpstreamOverloadedError(UpstreamError):
    status = 503
    type = "overloaded_error"
    code = "upstream_overloaded"
    retryable = True


class UpstreamTimeoutError(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
    retryable = True


class StreamTimeLimitError(UpstreamTimeoutError):
    """A stream ran past its provider's ``total_s``. The time includes writing to the client, so
    it says nothing about the vendor's health."""


class UpstreamConnectionError(UpstreamError):
    code = "upstream_connection_error"
    retryable = True


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


# Reported to attempt hooks when the client went away mid-attempt.
CLIENT_CLOSED = GatewayError("The client closed the connection.", status=499, type="client_closed",
                             code="client_closed")


def blames_provider(error: GatewayError) -> bool:
    """Whether a failure counts against the vendor's health (circuit breaker, health, fallback):
    anything from upstream except a vendor's verdict on the client's own request."""
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status not in UpstreamStatusError.PASSTHROUGH or error.upstream_status == 429
    return isinstance(error, UpstreamError) and not isinstance(error, StreamTimeLimitError)


def harms_health(error: GatewayError) -> bool:
    """Whether a failure counts towards opening the provider's circuit: what ``blames_provider``
    says, except a vendor's 429. That is back-pressure (Retry-After, retries and fallbacks deal
    with it), not ill health; counting it let two busy minutes take a provider out entirely."""
    if isinstance(error, UpstreamStatusError) and error.upstream_status == 429:
        return False
    return blames_provider(error)


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {msg}" if path else msg for path, msg in problems))
