"""Inbound dialects: wire formats other than Chat Completions that clients speak to the gateway.

A dialect is the mirror of a provider adapter. It turns its requests into the canonical chat
request (``accept``), canonical responses and chunks back into its own bodies and events
(``render``, ``stream_encoder``), and errors into its own envelope (``error_response``). When
the target provider speaks the dialect itself, ``upstream`` returns a ``NativeCall``: the body
is relayed with only the model rewritten, and the vendor's answer reaches the client as it came.

Third-party dialects subclass ``Dialect`` and register it under the entry-point group
``llm_gateway.dialects``; the entry-point name is the dialect's name (in metrics, spans, logs
and ``providers[].native_dialects``). See docs/dialects.md.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.adapter import Chunk, StreamTranslator, UpstreamRequest, encode_chunks
from gateway.errors import GatewayError, InvalidRequestError
from gateway.relay import DONE, PING, error_event, error_response

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.operations import Operation
    from gateway.registry import Provider
    from gateway.reload import Reloader
    from gateway.routing import Target

ENTRY_POINT_GROUP = "llm_gateway.dialects"
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StreamEncoder:
    """Canonical chunk batches → the bytes a streaming client gets. This default is Chat
    Completions' own framing (``data: {chunk}``, ``data: [DONE]``, an error event)."""

    #: written when a stream has been quiet for ``server.sse_ping_interval_s``.
    ping: bytes = PING

    def encode(self, batch: list[Chunk] | bytes) -> bytes:
        """One batch's bytes, written at once (nothing may be held back)."""
        return encode_chunks(batch)

    def end(self) -> bytes:
        """The bytes that close a stream that ended well."""
        return DONE

    def error(self, error: GatewayError) -> bytes:
        """The event that ends a stream that failed after its first byte."""
        return error_event(error)


class RelayEncoder(StreamEncoder):
    """A natively relayed stream: the vendor's bytes are the client's, its own end included;
    a failure after the first byte is told in the dialect's own error event."""

    def __init__(self, error: Callable[[GatewayError], bytes]) -> None:
        self._error = error

    def end(self) -> bytes:
        return b""

    def error(self, error: GatewayError) -> bytes:
        return self._error(error)


class ChunkEncoder(StreamEncoder):
    """A translating encoder's walk over canonical chunks: ``start`` once, with the first chunk;
    the latest ``usage`` kept; ``delta`` for each delta of choice 0 (what a dialect renders)."""

    def __init__(self) -> None:
        self.started = False
        self.usage: dict[str, Any] | None = None

    def encode(self, batch: list[Chunk] | bytes) -> bytes:
        out: list[bytes] = []
        for chunk in batch:  # type: ignore[union-attr]  (a translated stream: chunks, never bytes)
            obj = chunk.obj
            self.begin(obj, out)
            if obj.get("usage"):
                self.usage = obj["usage"]
            for choice in obj.get("choices") or ():
                if choice.get("index", 0) == 0:
                    self.delta(choice, out)
        return b"".join(out)

    def begin(self, obj: dict[str, Any], out: list[bytes]) -> None:
        """``start`` unless it ran (also for a stream that ends or fails before any chunk)."""
        if not self.started:
            self.started = True
            self.start(obj, out)

    def start(self, obj: dict[str, Any], out: list[bytes]) -> None:
        raise NotImplementedError

    def delta(self, choice: dict[str, Any], out: list[bytes]) -> None:
        raise NotImplementedError


@dataclass(slots=True)
class NativeCall:
    """A dialect request relayed to a vendor that speaks the dialect itself."""

    request: UpstreamRequest
    # The vendor's non-stream answer → the canonical chat response (usage, plugins, cache).
    parse: Callable[[bytes], dict[str, Any]]
    # A new translator whose ``raw`` is True: it relays every read and reads usage on the way.
    translator: Callable[[], StreamTranslator]


@dataclass(slots=True)
class DialectRequest:
    """What a dialect keeps of a request (in ``ctx.stash``) to relay it or refuse it per target."""

    raw: bytes  # the body as the client sent it
    body: dict[str, Any]  # ... and parsed
    refusal: InvalidRequestError | None  # what a translated provider must answer instead
    headers: dict[str, str] = field(default_factory=dict)  # client headers forwarded on a relay
    native: bool = False  # the serving attempt was relayed natively

    def relay(
        self, dialect: str, target: Target, path: str, parse: Callable[[bytes], dict[str, Any]],
        translator: Callable[[], StreamTranslator],
    ) -> NativeCall | None:
        """The native relay to ``target`` when it serves ``dialect`` (only the model rewritten);
        None when the request is to be translated; the refusal when it cannot be."""
        provider = target.provider
        self.native = speaks(provider, dialect)
        if self.native:
            content = with_model(self.raw, self.body, target.model)
            return NativeCall(provider.adapter.native_request(path, content, self.headers), parse, translator)
        if self.refusal is not None:
            raise self.refusal
        return None

    def relayed_bytes(self, ctx: RequestContext) -> bytes | None:
        """The vendor's own answer, when it was relayed and no plugin saw it."""
        return ctx.response_bytes if self.native else None


class Dialect:
    """Base class of inbound dialects; one instance per gateway, shared by its requests
    (per-request state lives in ``ctx.stash``)."""

    #: the entry-point name, set by ``load_dialects``.
    name: str = ""

    def operations(self) -> Iterable[Operation]:
        """The endpoints that go through the generic handler (``Operation(dialect=self,
        upstream=CHAT, ...)``; ``input_field`` names the canonical body's field)."""
        return ()

    def routes(self, live: Reloader) -> Iterable[tuple[str, str, RouteHandler]]:
        """Other endpoints of the dialect as (method, path, handler), e.g. token counting. A
        handler runs each request on one configuration generation: ``gw = live.enter()``, and
        ``live.leave(gw)`` once it is done (see docs/reload.md)."""
        return ()

    def accept(self, op: Operation, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        """The canonical chat body for ``ctx.body`` (the dialect's own, parsed from ``raw``, the
        bytes the client sent). Raises ``InvalidRequestError`` for a request no target could serve."""
        raise NotImplementedError

    def upstream(self, op: Operation, ctx: RequestContext, target: Target) -> NativeCall | dict[str, Any]:
        """For one target: a ``NativeCall`` when the provider speaks the dialect, else the chat
        body to translate (usually ``ctx.body``). Raises ``InvalidRequestError`` when the request
        needs the native API and this target does not have it (the next target may)."""
        return ctx.body

    def render(self, op: Operation, ctx: RequestContext, result: dict[str, Any]) -> bytes:
        """The client's body for a canonical chat response (``ctx.response_bytes``: the vendor's
        own bytes when relayed natively and no plugin saw the answer)."""
        raise NotImplementedError

    def stream_encoder(self, op: Operation, ctx: RequestContext) -> StreamEncoder:
        raise NotImplementedError

    def error_response(self, error: GatewayError, headers: Mapping[str, str]) -> web.Response:
        return error_response(error, headers)

    def claims(self, request: web.Request) -> bool:
        """Whether a request to an endpoint the dialects share with chat (``GET /v1/models``)
        comes from this dialect's clients: it is then answered in the dialect's shape."""
        return False

    def models_listing(self, listing: dict[str, Any]) -> dict[str, Any]:
        """The model list (OpenAI's shape) in the dialect's shape, for requests it ``claims``."""
        return listing


def installed_dialects() -> set[str]:
    """The names of the installed dialects (nothing is imported)."""
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_dialects() -> list[Dialect]:
    """Every installed dialect, one instance each, in entry-point name order."""
    out: list[Dialect] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Dialect)):
            raise TypeError(f"entry point {ep.name!r} of {ENTRY_POINT_GROUP} is not a Dialect subclass")
        dialect = cls()
        dialect.name = ep.name
        out.append(dialect)
    return out


def speaks(provider: Provider, dialect: str) -> bool:
    """Whether a provider serves a dialect itself (its config's word first, then its adapter's)."""
    native = provider.config.native_dialects
    return dialect in (native if native is not None else provider.adapter.native_dialects)


def with_model(raw: bytes, body: dict[str, Any], model: str) -> bytes:
    """The client's body bytes with only the top-level ``model`` value replaced. When the value
    cannot be found exactly once in the bytes, the parsed body is encoded again instead."""
    old = body.get("model")
    if old == model:
        return raw
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(orjson.dumps(old)))
    found = pattern.findall(raw)
    if len(found) == 1:
        return pattern.sub(lambda _: b'"model":' + orjson.dumps(model), raw, count=1)
    return orjson.dumps({**body, "model": model})
