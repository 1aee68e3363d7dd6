"""OpenRouter: OpenAI-compatible with attribution headers and integer error codes.

``options.http_referer`` / ``options.x_title`` become ``HTTP-Referer`` / ``X-Title`` (never sent
empty). ``: OPENROUTER PROCESSING`` keep-alive comments are skipped by the core SSE decoder, and
the mid-stream error chunk (``error`` + ``finish_reason: "error"``) is handled by the base. A 403
carrying moderation reasons is the client's content being flagged, so it answers 400
``content_filter`` rather than a credential error. Decisions: ``docs/providers/openrouter.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, Field

from gateway.adapter import upstream_status_error
from gateway.errors import GatewayError
from plugins.providers.openai import CompatOptions, OpenAICompatibleAdapter


class OpenRouterOptions(CompatOptions):
    http_referer: str | None = Field(None, min_length=1)
    x_title: str | None = Field(None, min_length=1)


class OpenRouterAdapter(OpenAICompatibleAdapter):
    options_model: ClassVar[type[BaseModel]] = OpenRouterOptions
    default_base_url: ClassVar[str | None] = "https://openrouter.ai/api/v1"
    native_dialects = frozenset({"openai_responses"})
    options: OpenRouterOptions

    def auth_headers(self) -> dict[str, str]:
        headers = super().auth_headers()
        if self.options.http_referer:
            headers["HTTP-Referer"] = self.options.http_referer
        if self.options.x_title:
            headers["X-Title"] = self.options.x_title
        return headers

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        if status == 403:
            obj = json_object(body)
            if obj is not None and moderation_reasons(obj):
                message = self.error_fields(obj)[0]
                return upstream_status_error(self.name, 400, message, headers, code="content_filter")
        return super().parse_error(status, body, headers)


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def moderation_reasons(obj: dict[str, Any]) -> list[Any]:
    """OpenRouter's moderation 403 lists why the input was flagged in ``error.metadata.reasons``."""
    err = obj.get("error")
    metadata = err.get("metadata") if isinstance(err, dict) else None
    reasons = metadata.get("reasons") if isinstance(metadata, dict) else None
    return reasons if isinstance(reasons, list) else []
