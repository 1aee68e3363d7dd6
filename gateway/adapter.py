"""The provider adapter interface: pure translation between the OpenAI wire format and a vendor's.

An adapter never opens sockets, retries or logs policy: the core's transport does the I/O, the
dispatcher retries, plugins observe. An adapter turns an OpenAI request body into an
``UpstreamRequest``, a vendor payload into an OpenAI-shaped dict, vendor stream events into
OpenAI chunks (``StreamTranslator``), and a vendor error into a ``GatewayError``.

Third-party adapters subclass ``ProviderAdapter`` and register it under the entry-point group
``llm_gateway.providers``; the entry-point name is the config ``type``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from gateway.errors import GatewayError, UnsupportedOperation, UpstreamProtocolError, UpstreamStatusError

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from gateway.operations import Operation
    from gateway.sse import SSEEvent
    from gateway.transport import Transport


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # holds the vendor key
    json: Any = field(default=None, repr=False)
    # A JSON body already encoded (a dialect's body relayed as the client sent it); wins over json.
    content: bytes | None = field(default=None, repr=False)


class Chunk:
    """One OpenAI-format stream chunk. ``data`` is the serialised JSON (relayed as is); ``obj``
    parses lazily, so a chunk nobody looks into is never decoded."""

    __slots__ = ("_obj", "data")

    def __init__(self, data: bytes, obj: dict[str, Any] | None = None) -> None:
        self.data = data
        self._obj = obj

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Chunk:
        return cls(orjson.dumps(obj), obj)

    @property
    def obj(self) -> dict[str, Any]:
        if self._obj is None:
            self._obj = orjson.loads(self.data)
        return self._obj

    def __repr__(self) -> str:
        return f"Chunk({self.data[:80]!r})"


def encode_chunks(chunks: list[Chunk] | bytes) -> bytes:
    """Chunks as SSE bytes for the client (bytes: already encoded, relayed as read)."""
    if type(chunks) is bytes:
        return chunks
    if len(chunks) == 1:
        return b"data: " + chunks[0].data + b"\n\n"
    return b"".join([b"data: " + c.data + b"\n\n" for c in chunks])


class StreamTranslator:
    """Stateful, one per streamed request: vendor SSE events in, OpenAI chunks out.

    ``feed`` returns zero or more chunks per event; ``done`` becomes True at the vendor's
    terminal event; ``finish`` runs at end of input and raises ``UpstreamProtocolError`` when
    the stream ended without its terminal event. ``usage`` holds the OpenAI-shaped usage dict
    once known.
    """

    #: The upstream's bytes are the client's bytes (a dialect relayed natively): every read is
    #: relayed through ``passthrough``, whoever wraps streams, and ``feed`` is never asked.
    raw: ClassVar[bool] = False

    def __init__(self) -> None:
        self.done = False
        self.usage: dict[str, Any] | None = None

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        raise NotImplementedError

    def passthrough(self, data: bytes) -> int:
        """How many leading bytes of an upstream read (which starts on an event boundary) are
        already valid OpenAI SSE needing no translation, usage reading or error handling: the core
        relays them untouched and decodes only the rest (also a last event the read cut short).
        Only asked when no plugin wraps the stream; the answer must end on an event boundary.
        0: decode everything."""
        return 0

    def finish(self) -> Iterable[Chunk]:
        if not self.done:
            raise UpstreamProtocolError("upstream stream ended before its final event")
        return ()


class ProviderAdapter:
    """Base class for vendor adapters. Subclasses set the class attributes and override the
    translation methods for the operations they support."""

    #: pydantic model validating ``providers[i].options``.
    options_model: ClassVar[type[BaseModel]] = NoOptions
    #: operation names (``chat``, ``completions``, ``embeddings``) this vendor serves.
    operations: ClassVar[frozenset[str]] = frozenset({"chat"})
    #: used when ``base_url`` is not configured.
    default_base_url: ClassVar[str | None] = None
    #: whether ``api_key`` must be set.
    requires_api_key: ClassVar[bool] = True
    #: ``parse_response`` returns the vendor's JSON as parsed, unchanged: a non-stream answer may
    #: go to the client as the bytes that came, without encoding it again.
    relays_response_bytes: ClassVar[bool] = False
    #: inbound dialects (entry-point names of ``llm_gateway.dialects``) whose wire format this
    #: vendor serves itself: their requests are relayed with ``native_request``, not translated.
    #: ``providers[].native_dialects`` overrides it per deployment.
    native_dialects: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, config: ProviderConfig, options: BaseModel) -> None:
        self.name = name
        self.config = config
        self.options = options
        base = config.base_url or self.default_base_url
        if not base:
            raise ValueError("base_url is required for this provider type")
        self.base_url = base.rstrip("/")

    # -- capability ---------------------------------------------------------------------------
    def check_supported(self, op: Operation) -> None:
        if op.name not in self.operations:
            raise UnsupportedOperation(
                f"Provider '{self.name}' does not support the {op.path} endpoint", param="model"
            )

    def create_transport(self) -> Transport | None:
        """Return a custom transport (e.g. an offline one); None uses the pooled HTTP transport."""
        return None

    # -- requests -----------------------------------------------------------------------------
    def build_request(self, op: Operation, body: dict[str, Any], model: str) -> UpstreamRequest:
        raise UnsupportedOperation(f"Provider '{self.name}' does not support the {op.path} endpoint")

    def parse_response(self, op: Operation, payload: Any, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def native_request(self, path: str, content: bytes, headers: Mapping[str, str]) -> UpstreamRequest:
        """A dialect's body relayed as is to ``path`` under the vendor's API root (e.g.
        ``/messages``); ``headers`` are the client headers the dialect forwards."""
        raise UnsupportedOperation(f"Provider '{self.name}' does not serve {path} natively")

    def stream_translator(self, op: Operation, body: dict[str, Any], model: str) -> StreamTranslator:
        raise UnsupportedOperation(f"Provider '{self.name}' does not support streaming {op.path}")

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        """Vendor error → gateway error. The default reads OpenAI-style and flat bodies."""
        return upstream_status_error(self.name, status, extract_error_message(body), headers)

    # -- models and health ----------------------------------------------------------------------
    def models_request(self) -> UpstreamRequest | None:
        """The vendor's model listing, or None to serve the configured ``models`` list."""
        return None

    def parse_models(self, payload: Any) -> list[str]:
        return [m["id"] for m in payload.get("data", []) if isinstance(m, dict) and "id" in m]

    def health_request(self) -> UpstreamRequest | None:
        """A request that proves connectivity and auth without spending tokens."""
        return self.models_request()


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A vendor's rate-limit headers, whatever its naming (``x-ratelimit-*``, ``<vendor>-ratelimit-*``,
    ``retry-after``, ``retry-after-ms``): forwarded on errors so clients can back off."""
    return {k: v for k, v in headers.items() if "ratelimit" in k.lower() or k.lower().startswith("retry-after")}


def extract_error_message(body: bytes) -> str:
    """Best-effort vendor error message from the common shapes; never returns HTML."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "upstream returned a non-JSON error"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(obj.get("message"), str):
            return obj["message"]
    return "upstream returned an error"


def upstream_status_error(
    provider: str, status: int, message: str, headers: Mapping[str, str], **kw: Any
) -> UpstreamStatusError:
    """Build the error for a vendor status, forwarding its rate-limit headers."""
    return UpstreamStatusError(
        f"{provider}: {message}", upstream_status=status, headers=rate_limit_headers(headers), provider=provider,
        **kw,
    )
