"""Perplexity (Sonar API): OpenAI chat plus search results, nothing else.

Chat only (no legacy completions, embeddings or model listing). Responses keep ``citations``,
``search_results``, ``images`` and ``related_questions`` as extra top-level fields, on every stream
chunk too. Stream chunks also repeat the accumulated ``message`` (cut here) and cumulative usage
(cut by the base and sent once at the end when asked); ``[DONE]`` is not guaranteed, so the stream
is complete once a ``finish_reason`` arrived. Decisions: ``docs/providers/perplexity.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel

from gateway.errors import InvalidRequestError
from gateway.operations import Operation
from plugins.providers.openai import CompatOptions, OpenAICompatibleAdapter, OpenAIStreamTranslator

# Fields that would change what the client gets back if silently dropped: a 400 names them.
REJECTED: dict[str, Callable[[Any], bool]] = {
    "tools": bool,
    "functions": bool,
    "n": lambda n: n not in (None, 1),
    "logprobs": bool,
}


class PerplexityStreamTranslator(OpenAIStreamTranslator):
    done_required = False

    def needs_edit(self, data: bytes) -> bool:
        return b'"message"' in data

    def transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        for choice in obj.get("choices") or ():
            if isinstance(choice, dict):
                choice.pop("message", None)
        if obj.get("object") == "chat.completion":  # older streams labelled chunks like responses
            obj["object"] = "chat.completion.chunk"
        return obj


class PerplexityAdapter(OpenAICompatibleAdapter):
    options_model: ClassVar[type[BaseModel]] = CompatOptions
    operations = frozenset({"chat"})
    default_base_url: ClassVar[str | None] = "https://api.perplexity.ai"
    stream_usage = False  # usage arrives on every chunk anyway; stream_options is not documented
    # Sampling hints without an equivalent: dropped with a debug log (REJECTED ones answer 400 first).
    unsupported_params = frozenset({
        "tools", "functions", "tool_choice", "function_call", "parallel_tool_calls", "n", "logprobs",
        "top_logprobs", "stop", "logit_bias", "seed", "stream_options", "stream_mode",
    })
    translator_class = PerplexityStreamTranslator

    def prepare_body(self, op: Operation, body: dict[str, Any], model: str) -> dict[str, Any]:
        for field, rejected in REJECTED.items():
            if rejected(body.get(field)):
                raise InvalidRequestError(
                    f"Provider '{self.name}' (Perplexity) does not support '{field}'", param=field,
                    code="unsupported_parameter",
                )
        payload = super().prepare_body(op, body, model)
        if "max_completion_tokens" in payload:  # the Sonar API only knows max_tokens
            tokens = payload.pop("max_completion_tokens")
            payload.setdefault("max_tokens", tokens)
        return payload

    def models_request(self) -> None:
        return None  # no listing endpoint: the configured list is the listing
