"""Cohere (API v2): chat, legacy completions (through chat) and embeddings.

``base_url`` is the API root (``https://api.cohere.com``); the adapter appends ``/v2/chat``,
``/v2/embed`` and ``/v1/models``. The translations live in one module per operation; this class
only routes to them, and is the one place the key is touched. Field-by-field decisions:
docs/providers/cohere.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from gateway.adapter import ProviderAdapter, StreamTranslator, UpstreamRequest
from gateway.errors import GatewayError
from gateway.operations import Operation
from plugins.providers.cohere import chat, completions, embed, errors
from plugins.providers.cohere.stream import CohereStreamTranslator

__all__ = ["CohereAdapter", "CohereOptions"]


class CohereOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``input_type`` sent to /v2/embed when the request does not name one (Cohere v3+ requires it).
    embed_input_type: Literal["search_document", "search_query", "classification", "clustering"] = "search_document"
    #: usage reported to clients and metrics: ``billed_units`` (what Cohere charges) or ``tokens``
    #: (what the model processed, incl. Cohere's hidden system preamble).
    usage_source: Literal["billed_units", "tokens"] = "billed_units"
    #: chat ``safety_mode`` sent on every request (a request's own ``safety_mode`` wins).
    safety_mode: Literal["CONTEXTUAL", "STRICT", "OFF"] | None = None
    #: sent as ``X-Client-Name`` (Cohere's attribution header).
    client_name: str | None = None


class CohereAdapter(ProviderAdapter):
    options_model: ClassVar[type[BaseModel]] = CohereOptions
    operations = frozenset({"chat", "completions", "embeddings"})
    default_base_url: ClassVar[str | None] = "https://api.cohere.com"
    options: CohereOptions

    def __init__(self, name: str, config: Any, options: Any) -> None:
        super().__init__(name, config, options)
        # A base_url copied with a version suffix must not produce /v2/v2/chat.
        self.base_url = re.sub(r"/v[12]$", "", self.base_url)
        self.headers = {"Authorization": f"Bearer {config.key}"}
        if self.options.client_name:
            self.headers["X-Client-Name"] = self.options.client_name

    # -- requests -----------------------------------------------------------------------------
    def build_request(self, op: Operation, body: dict[str, Any], model: str) -> UpstreamRequest:
        self.check_supported(op)
        if op.name == "embeddings":
            payload = embed.build_embed(body, model, input_type=self.options.embed_input_type, provider=self.name)
            return self.post("/v2/embed", payload, stream=False)
        if op.name == "completions":
            body = completions.completion_to_chat(body)
        payload = chat.build_chat(body, model, safety_mode=self.options.safety_mode, provider=self.name)
        return self.post("/v2/chat", payload, stream=payload["stream"])

    def post(self, path: str, payload: dict[str, Any], *, stream: bool) -> UpstreamRequest:
        accept = "text/event-stream" if stream else "application/json"
        return UpstreamRequest("POST", self.base_url + path, {**self.headers, "Accept": accept}, payload)

    def parse_response(self, op: Operation, payload: Any, model: str) -> dict[str, Any]:
        source = self.options.usage_source
        if op.name == "embeddings":
            return embed.parse_embed(payload, model, usage_source=source)
        result = chat.parse_chat(payload, model, usage_source=source, provider=self.name)
        return completions.chat_to_completion(result) if op.name == "completions" else result

    def stream_translator(self, op: Operation, body: dict[str, Any], model: str) -> StreamTranslator:
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
        return CohereStreamTranslator(
            model, include_usage=include_usage,
            usage_source=self.options.usage_source, text_mode=op.name == "completions", provider=self.name,
        )

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return errors.parse_error(self.name, status, body, headers)

    # -- models and health ----------------------------------------------------------------------
    def models_request(self) -> UpstreamRequest | None:
        # Cohere pages its listing (20 by default); 1000 is its maximum page size.
        return UpstreamRequest("GET", self.base_url + "/v1/models?page_size=1000", dict(self.headers))

    def parse_models(self, payload: Any) -> list[str]:
        return [m["name"] for m in payload.get("models", []) if isinstance(m, dict) and isinstance(m.get("name"), str)]

    def health_request(self) -> UpstreamRequest | None:
        # The listing proves connectivity and the key without spending tokens; one entry is enough.
        return UpstreamRequest("GET", self.base_url + "/v1/models?page_size=1", dict(self.headers))
