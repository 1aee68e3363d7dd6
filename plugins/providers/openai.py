"""OpenAI, and the base every OpenAI-compatible vendor adapter builds on.

Requests pass through with the model swapped for the upstream name; responses and stream chunks
are relayed without a JSON round trip: a chunk is only parsed when it carries usage or an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.adapter import Chunk, ProviderAdapter, StreamTranslator, UpstreamRequest
from gateway.errors import UpstreamError
from gateway.operations import Operation
from gateway.sse import SSEEvent

log = logging.getLogger("llm_gateway.providers.openai")

PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    organization: str | None = None
    project: str | None = None
    # Extra static headers sent upstream (never secrets: they are not redacted like api_key).
    headers: dict[str, str] = Field(default_factory=dict)


def has_object_field(data: bytes, key: bytes) -> bool:
    """True when ``key`` (quoted) is followed by an object (``{``) anywhere in ``data``: a cheap
    test that never decodes, robust to whitespace after the colon."""
    start = data.find(key)
    while start != -1:
        i = start + len(key)
        while i < len(data) and data[i] in b" \t\r\n:":
            i += 1
        if i < len(data) and data[i] == 123:  # "{"
            return True
        start = data.find(key, start + 1)
    return False


class OpenAIStreamTranslator(StreamTranslator):
    """Relays OpenAI-format chunks as raw bytes. Usage is always requested upstream; the usage
    chunk (``choices: []``) is dropped again when the client did not ask for it."""

    #: whether a stream must end with ``[DONE]`` (some vendors just close the connection).
    done_required: ClassVar[bool] = True

    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__()
        self.client_wants_usage = client_wants_usage
        self.finish_seen = False

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return ()
        if event.event == "error" or b'"error"' in data:
            self.check_error(data)
        if b'"finish_reason":"' in data or b'"finish_reason": "' in data:
            self.finish_seen = True
        if has_object_field(data, b'"usage"'):
            obj = orjson.loads(data)
            self.usage = obj.get("usage")
            if not obj.get("choices"):
                return (Chunk(data, obj),) if self.client_wants_usage else ()
            return (self.transform(Chunk(data, obj)),)
        if b'"choices":[]' in data or b'"choices": []' in data:
            return ()  # e.g. a prompt-filter annotation chunk with nothing for the client
        return (self.transform(Chunk(data)),)

    def transform(self, chunk: Chunk) -> Chunk:
        """Hook for vendors whose chunks need edits; the OpenAI passthrough edits nothing."""
        return chunk

    def check_error(self, data: bytes) -> None:
        obj = orjson.loads(data)
        err = obj.get("error") if isinstance(obj, dict) else None
        if err:
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamError(f"upstream stream error: {message or 'unknown error'}")

    def finish(self) -> Iterable[Chunk]:
        if not self.done and (self.done_required or not self.finish_seen):
            return super().finish()
        return ()


class OpenAIAdapter(ProviderAdapter):
    options_model: ClassVar[type[BaseModel]] = OpenAIOptions
    operations = frozenset({"chat", "completions", "embeddings"})
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    #: the vendor honours ``stream_options.include_usage``.
    stream_usage: ClassVar[bool] = True
    #: OpenAI request fields this vendor rejects; dropped (with a debug log) before sending.
    unsupported_params: ClassVar[frozenset[str]] = frozenset()
    translator_class: ClassVar[type[OpenAIStreamTranslator]] = OpenAIStreamTranslator

    def __init__(self, name: str, config: Any, options: Any) -> None:
        super().__init__(name, config, options)
        self.headers = self.auth_headers()

    def auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.key}"}
        opts = self.options
        if getattr(opts, "organization", None):
            headers["OpenAI-Organization"] = opts.organization
        if getattr(opts, "project", None):
            headers["OpenAI-Project"] = opts.project
        headers.update(getattr(opts, "headers", None) or {})
        return headers

    def url(self, op: Operation, model: str) -> str:
        return self.base_url + PATHS[op.name]

    def prepare_body(self, op: Operation, body: dict[str, Any], model: str) -> dict[str, Any]:
        payload = dict(body)
        payload["model"] = model
        for key in self.unsupported_params.intersection(payload):
            log.debug("provider %s: dropping unsupported parameter %r", self.name, key)
            del payload[key]
        if payload.get("stream") and self.stream_usage:
            payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        return payload

    def build_request(self, op: Operation, body: dict[str, Any], model: str) -> UpstreamRequest:
        self.check_supported(op)
        return UpstreamRequest("POST", self.url(op, model), dict(self.headers), self.prepare_body(op, body, model))

    def parse_response(self, op: Operation, payload: Any, model: str) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ValueError("response is not a JSON object")
        return payload

    def stream_translator(self, op: Operation, body: dict[str, Any], model: str) -> StreamTranslator:
        wants = bool((body.get("stream_options") or {}).get("include_usage"))
        return self.translator_class(wants)

    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.base_url + "/models", dict(self.headers))
