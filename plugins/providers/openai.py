"""OpenAI, and the base every OpenAI-compatible vendor adapter builds on.

Requests pass through with the model swapped for the upstream name; responses and stream chunks
are relayed without a JSON round trip: a chunk is only parsed when it carries usage or an error,
or when the vendor's ``needs_edit`` says so.

A vendor subclass overrides only what differs (see ``docs/writing-a-provider.md``):

- class attributes: ``default_base_url``, ``operations``, ``options_model``,
  ``unsupported_params`` (dropped), ``stream_usage``, ``translator_class``;
- requests: ``url(op, model)``, ``auth_headers()``, ``prepare_body(op, body, model)``;
- responses and errors: ``parse_response(op, payload, model)``, ``error_fields(obj)``, ``parse_error``;
- streams (on the translator): ``done_required``, ``needs_edit(data)``, ``transform(obj)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.adapter import (
    Chunk,
    ProviderAdapter,
    StreamTranslator,
    UpstreamRequest,
    extract_error_message,
    upstream_status_error,
)
from gateway.errors import GatewayError, UpstreamError, UpstreamProtocolError
from gateway.operations import Operation
from gateway.sse import SSEEvent

log = logging.getLogger("llm_gateway.providers.openai")

PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
# Chunk fields copied onto a usage chunk the gateway builds itself.
HEAD_KEYS = ("id", "object", "created", "model", "system_fingerprint")
# A vendor error code worth showing a client: an identifier, not a number or a sentence.
CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


class CompatOptions(BaseModel):
    """Options every OpenAI-compatible vendor takes; vendor option models extend this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Extra static headers sent upstream (never secrets: they are not redacted like api_key).
    headers: dict[str, str] = Field(default_factory=dict)


class OpenAIOptions(CompatOptions):
    organization: str | None = None
    project: str | None = None


def has_empty_array(data: bytes, key: bytes) -> bool:
    """True when the first ``key`` (quoted) is followed by ``[]``. One ``find`` that stops early:
    ``"choices"`` sits near the start of every chunk."""
    i = data.find(key)
    if i == -1:
        return False
    i += len(key)
    while i < len(data) and data[i] in b" \t\r\n:":
        i += 1
    if i >= len(data) or data[i] != 91:  # "["
        return False
    i += 1
    while i < len(data) and data[i] in b" \t\r\n":
        i += 1
    return i < len(data) and data[i] == 93  # "]"


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


def vendor_code(code: Any) -> str | None:
    """The vendor's error code when it is an identifier (``DeploymentNotFound``, ``content_filter``);
    numbers (``429``, ``"401"``) and sentences say nothing the status does not."""
    return code if isinstance(code, str) and CODE_RE.fullmatch(code) else None


def stream_error(err: Any) -> UpstreamError:
    """The error for a vendor's in-stream ``error`` object (or string)."""
    if isinstance(err, dict):
        message, code = err.get("message"), vendor_code(err.get("code"))
    else:
        message, code = str(err), None
    return UpstreamError(f"upstream stream error: {message or 'unknown error'}", code=code)


class OpenAIStreamTranslator(StreamTranslator):
    """Relays OpenAI-format chunks as raw bytes. Usage is always requested upstream; the usage
    chunk (``choices: []``) is dropped again when the client did not ask for it. Usage that rides
    on a content chunk (xAI, Perplexity, Blackbox) is cut from it and sent as one OpenAI-style
    usage chunk at the end, and only when asked: clients that sum usage over chunks stay right."""

    #: whether a stream must end with ``[DONE]`` (some vendors just close the connection; then a
    #: ``finish_reason`` must have been seen).
    done_required: ClassVar[bool] = True
    #: in-stream errors may sit anywhere in a chunk (an ``error`` object beside ``choices``, or
    #: ``finish_reason: "error"``); OpenAI itself only sends ``{"error": ...}`` events.
    error_anywhere: ClassVar[bool] = True
    #: drop chunks with ``choices: []`` and no usage (annotation-only chunks some vendors send).
    drop_empty_choices: ClassVar[bool] = True

    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__()
        self.client_wants_usage = client_wants_usage
        self.finish_seen = False
        self._usage_sent = False
        self._head: dict[str, Any] | None = None

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return ()
        if not data or data[0] != 123 or data[-1] != 125:  # "{" ... "}"
            # O(1) guard instead of a JSON parse per chunk: catches garbage and truncated events.
            raise UpstreamProtocolError("upstream sent a malformed stream event")
        if event.event == "error" or (
            b'"error"' in data if self.error_anywhere else data.startswith(b'{"error"')
        ):
            self.check_error(data)
        if not self.done_required and (b'"finish_reason":"' in data or b'"finish_reason": "' in data):
            self.finish_seen = True
        if not data.endswith(b'"usage":null}') and b'"usage"' in data and has_object_field(data, b'"usage"'):
            obj = orjson.loads(data)
            self.usage = obj.pop("usage")
            if not obj.get("choices"):
                self._usage_sent = self.client_wants_usage
                return (Chunk(data),) if self.client_wants_usage else ()
            obj = self.transform(obj)
            self._head = {k: obj[k] for k in HEAD_KEYS if k in obj}
            return (Chunk.of(obj),)
        if self.drop_empty_choices and has_empty_array(data, b'"choices"'):
            return ()  # e.g. a prompt-filter annotation chunk with nothing for the client
        if self.needs_edit(data):
            return (Chunk.of(self.transform(orjson.loads(data))),)
        return (Chunk(data),)

    def needs_edit(self, data: bytes) -> bool:
        """Cheap byte test: must this chunk go through ``transform``? The passthrough says no."""
        return False

    def transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Edit one parsed chunk (also called for every chunk that carried usage)."""
        return obj

    def check_error(self, data: bytes) -> None:
        """Raise for an in-stream error: an ``error`` object, or a choice that finished with the
        non-OpenAI reason ``error`` (OpenRouter, Blackbox)."""
        obj = orjson.loads(data)
        if not isinstance(obj, dict):
            return
        if obj.get("error"):
            raise stream_error(obj["error"])
        for choice in obj.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason") == "error":
                raise UpstreamError("upstream stream error: the vendor ended the stream with an error")

    def finish(self) -> Iterable[Chunk]:
        if not self.done and (self.done_required or not self.finish_seen):
            return super().finish()
        if self.client_wants_usage and not self._usage_sent and self.usage and self._head is not None:
            return (Chunk.of({**self._head, "choices": [], "usage": self.usage}),)
        return ()


class OpenAICompatibleAdapter(ProviderAdapter):
    """The base of every OpenAI-compatible vendor: each subclass keeps only its differences."""

    options_model: ClassVar[type[BaseModel]] = OpenAIOptions
    operations = frozenset({"chat", "completions", "embeddings"})
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    #: the vendor honours ``stream_options.include_usage`` (so the gateway always asks for usage).
    stream_usage: bool = True
    #: OpenAI request fields this vendor rejects; dropped (with a debug log) before sending.
    unsupported_params: ClassVar[frozenset[str]] = frozenset()
    translator_class: ClassVar[type[OpenAIStreamTranslator]] = OpenAIStreamTranslator
    relays_response_bytes: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "parse_response" in cls.__dict__ and "relays_response_bytes" not in cls.__dict__:
            cls.relays_response_bytes = False  # it fixes responses up: their bytes are not the answer

    def __init__(self, name: str, config: Any, options: Any) -> None:
        super().__init__(name, config, options)
        self.headers = self.auth_headers()

    # -- requests -----------------------------------------------------------------------------
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

    def native_request(self, path: str, content: bytes, headers: Mapping[str, str]) -> UpstreamRequest:
        # A dialect the vendor serves itself (e.g. /responses) sits beside /chat/completions.
        return UpstreamRequest("POST", self.base_url + path, {**headers, **self.headers}, content=content)

    # -- responses ----------------------------------------------------------------------------
    def parse_response(self, op: Operation, payload: Any, model: str) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ValueError("response is not a JSON object")
        return payload

    def stream_translator(self, op: Operation, body: dict[str, Any], model: str) -> StreamTranslator:
        wants = bool((body.get("stream_options") or {}).get("include_usage"))
        return self.translator_class(wants)

    # -- errors -------------------------------------------------------------------------------
    def error_fields(self, obj: dict[str, Any]) -> tuple[str, Any, Any]:
        """``(message, code, param)`` from a parsed error body: nested ``{"error": {...}}``, flat
        ``{"error": "...", "code": ...}`` or flat ``{"message": ...}``."""
        err = obj.get("error")
        if isinstance(err, dict):
            message = err.get("message")
            return (message if isinstance(message, str) else "upstream returned an error",
                    err.get("code"), err.get("param"))
        if isinstance(err, str):
            return err, obj.get("code"), None
        message = obj.get("message")
        return (message if isinstance(message, str) else "upstream returned an error"), obj.get("code"), None

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        """Keep the vendor's message, param and identifier-like code; the status decides the rest
        (a vendor 401/403 is the gateway's credential problem, never the client's)."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            return upstream_status_error(self.name, status, extract_error_message(body), headers)
        message, code, param = self.error_fields(obj)
        kw: dict[str, Any] = {}
        code = vendor_code(code)
        if code and status < 500 and status not in (401, 403):
            kw["code"] = code
        if isinstance(param, str) and param:
            kw["param"] = param
        return upstream_status_error(self.name, status, message, headers, **kw)

    # -- models and health ----------------------------------------------------------------------
    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.base_url + "/models", dict(self.headers))


class OpenAINativeTranslator(OpenAIStreamTranslator):
    """OpenAI's own streams: errors only as ``{"error": ...}`` events and no annotation-only
    chunks, so two byte scans per chunk are saved."""

    error_anywhere = False
    drop_empty_choices = False

    def passthrough(self, data: bytes) -> int:
        """OpenAI streams content chunks, and only at their end the usage chunk, ``[DONE]`` or an
        error event. So only the end of a read is searched, from its last whole event backwards,
        for the first event that needs work (usage, an error, anything but one ``data: {...}``
        line); what comes before it is relayed as read once a check shows that it is all
        ``data: {...}`` lines (a raw newline cannot occur inside JSON). Searching every event
        of every read cost a tenth of the gateway's CPU per stream. A read with CR line ends, or
        with anything else before the end, is decoded whole."""
        if not data.startswith(b"data: {") or b"\r" in data:
            return 0
        if (  # the usual read, one whole content event: the same tests without the search
            data.find(b"\n") == len(data) - 2  # find is memchr; bytes.count(b"\n") goes byte by byte
            and data.endswith(b"}\n\n")
            and not data.startswith(b'data: {"error"')
            and b'"usage":{' not in data
            and b'"usage": {' not in data
        ):
            return len(data)
        end = data.rfind(b"\n\n") + 2  # whole events only: a cut-short last one is decoded
        while end > 2:
            start = data.rfind(b"\n\n", 0, end - 2) + 2
            if start == 1:
                start = 0
            if (
                data[end - 3] == 125  # "}"
                and data.startswith(b"data: {", start)
                and not data.startswith(b'data: {"error"', start)
                and data.find(b"\n", start, end - 2) == -1
                and data.find(b'"usage":{', start, end) == -1
                and data.find(b'"usage": {', start, end) == -1
            ):
                break
            end = start
        else:
            return 0
        # Only the final "\n\n" may be left once the event boundaries are taken out. Not two
        # counts: bytes.count(b"\n") walks byte by byte, split is a fast search and find memchr.
        rest = b"".join(data[:end].split(b"}\n\ndata: {"))
        return end if rest.find(b"\n") == len(rest) - 2 else 0


class OpenAIAdapter(OpenAICompatibleAdapter):
    """OpenAI itself."""

    native_dialects = frozenset({"openai_responses"})

    translator_class = OpenAINativeTranslator
