"""Blackbox AI: OpenAI-compatible chat (``/chat/completions``, no ``/v1``) whose LiteLLM-style
bodies spell null as the string ``"None"``. Those placeholders become null in responses, error
bodies and the stream chunks that contain one. Chat only. Decisions: ``docs/providers/blackbox.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from gateway.operations import Operation
from plugins.providers.openai import CompatOptions, OpenAICompatibleAdapter, OpenAIStreamTranslator

# Fields whose value is never legitimately the text "None" (objects, lists, enums, ids).
NULLABLE = frozenset({
    "tool_calls", "function_call", "system_fingerprint", "logprobs", "refusal", "finish_reason",
    "native_finish_reason", "audio", "annotations", "reasoning", "reasoning_content", "service_tier",
    "param", "code", "type",
})


def none_to_null(value: Any) -> Any:
    """Replace ``"None"`` placeholders in place. ``content`` is nulled only beside real tool calls,
    so a model that answers the word "None" keeps its answer."""
    if isinstance(value, list):
        for item in value:
            none_to_null(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if item == "None" and key in NULLABLE:
                value[key] = None
            elif isinstance(item, dict | list):
                none_to_null(item)
        if value.get("content") == "None" and isinstance(value.get("tool_calls"), list):
            value["content"] = None
    return value


class BlackboxStreamTranslator(OpenAIStreamTranslator):
    def needs_edit(self, data: bytes) -> bool:
        return b'"None"' in data

    def transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        return none_to_null(obj)


class BlackboxAdapter(OpenAICompatibleAdapter):
    options_model: ClassVar[type[BaseModel]] = CompatOptions
    operations = frozenset({"chat"})
    default_base_url: ClassVar[str | None] = "https://api.blackbox.ai"
    translator_class = BlackboxStreamTranslator

    def parse_response(self, op: Operation, payload: Any, model: str) -> dict[str, Any]:
        return none_to_null(super().parse_response(op, payload, model))

    def error_fields(self, obj: dict[str, Any]) -> tuple[str, Any, Any]:
        return super().error_fields(none_to_null(obj))

    def models_request(self) -> None:
        return None  # no documented listing: the configured list is the listing
