"""Anthropic Messages API adapter (``type: anthropic``).

Modules by concern: ``chat`` (request and response translation), ``content`` (message content
blocks), ``completions`` (legacy completions over the Messages API), ``stream`` (stream events →
OpenAI chunks) and ``errors``. Per-field decisions: docs/providers/anthropic.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from gateway.adapter import ProviderAdapter, StreamTranslator, UpstreamRequest
from gateway.errors import GatewayError
from gateway.operations import Operation
from plugins.providers.anthropic import completions
from plugins.providers.anthropic.chat import build_payload, chat_completion
from plugins.providers.anthropic.errors import parse_error
from plugins.providers.anthropic.stream import AnthropicStreamTranslator

__all__ = ["AnthropicAdapter", "AnthropicOptions"]


class AnthropicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    anthropic_version: str = "2023-06-01"
    # Beta feature names, sent comma-separated in one ``anthropic-beta`` header.
    beta: tuple[str, ...] = ()
    # Anthropic requires max_tokens; used when the client sends neither max_tokens nor
    # max_completion_tokens (per-model values first).
    default_max_tokens: PositiveInt = 4096
    max_tokens_by_model: dict[str, PositiveInt] = Field(default_factory=dict)
    # Sent as the request's ``thinking`` unless the client sends its own (e.g. via extra_body).
    thinking: dict[str, Any] | None = None


class AnthropicAdapter(ProviderAdapter):
    options_model: ClassVar[type[BaseModel]] = AnthropicOptions
    operations = frozenset({"chat", "completions"})
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"
    options: AnthropicOptions
    native_dialects = frozenset({"anthropic_messages"})

    def __init__(self, name: str, config: Any, options: AnthropicOptions) -> None:
        super().__init__(name, config, options)
        # The contract's base_url is the host root; a pasted ".../v1" would double the prefix.
        self.base_url = self.base_url.removesuffix("/v1")
        self.headers = {"x-api-key": config.key, "anthropic-version": options.anthropic_version}
        if options.beta:
            self.headers["anthropic-beta"] = ",".join(options.beta)

    def build_request(self, op: Operation, body: dict[str, Any], model: str) -> UpstreamRequest:
        self.check_supported(op)
        if op.name == "completions":
            body = completions.chat_body(body, self.name)
        payload = build_payload(body, model, self.options, self.name)
        return UpstreamRequest("POST", self.base_url + "/v1/messages", dict(self.headers), payload)

    def native_request(self, path: str, content: bytes, headers: Mapping[str, str]) -> UpstreamRequest:
        # The client's anthropic-version / anthropic-beta go upstream as it sent them.
        return UpstreamRequest("POST", f"{self.base_url}/v1{path}", {**self.headers, **headers}, content=content)

    def parse_response(self, op: Operation, payload: Any, model: str) -> dict[str, Any]:
        if op.name == "completions":
            return completions.text_completion(payload, model)
        return chat_completion(payload, model)

    def stream_translator(self, op: Operation, body: dict[str, Any], model: str) -> StreamTranslator:
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
        return AnthropicStreamTranslator(self.name, model, chat=op.name == "chat", include_usage=include_usage)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return parse_error(self.name, status, body, headers)

    def models_request(self) -> UpstreamRequest | None:
        # One page of the maximum size: the listing is paginated at 20 by default.
        return UpstreamRequest("GET", self.base_url + "/v1/models?limit=1000", dict(self.headers))
