"""xAI (Grok): OpenAI-compatible; its error bodies are flat (``{"code": "…", "error": "…"}``, read
by the base) and a bad API key answers 400, which this adapter reports as the gateway's credential
problem (502 ``upstream_auth_error``) like any vendor 401. ``reasoning_content`` deltas pass
through untouched. Decisions: ``docs/providers/grok.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import BaseModel

from gateway.errors import GatewayError
from plugins.providers.openai import CompatOptions, OpenAICompatibleAdapter


class GrokAdapter(OpenAICompatibleAdapter):
    options_model: ClassVar[type[BaseModel]] = CompatOptions
    default_base_url: ClassVar[str | None] = "https://api.x.ai/v1"
    native_dialects = frozenset({"openai_responses"})

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        error = super().parse_error(status, body, headers)
        if status == 400 and "api key" in error.message.lower():
            return super().parse_error(401, body, headers)
        return error
