"""Calling upstream: one attempt against one target (admission, the attempt hooks, the circuit
breaker's successes), and turning vendor streams into OpenAI chunks. Which targets are tried, how
often, and the failures a circuit counts: ``gateway.fallback``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gateway.adapter import Chunk, StreamTranslator, UpstreamRequest, encode_chunks
from gateway.dialect import NativeCall
from gateway.errors import (
    CLIENT_CLOSED,
    GatewayError,
    ServiceUnavailableError,
    StreamTimeLimitError,
    UnsupportedOperation,
    UpstreamProtocolError,
    blames_provider,
    harms_health,
)
from gateway.fallback import through_targets
from gateway.secrets import Scrubber
from gateway.sse import SSEDecoder, SSEEvent
from gateway.transport import UPSTREAM_EXCEPTIONS, Attempt, map_exception, reader

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.hookcall import Hooks
    from gateway.registry import Provider
    from gateway.routing import Target

R = TypeVar("R")
log = logging.getLogger("llm_gateway.dispatch")
# Vendor payloads that do not have the shape an adapter expects surface as these.
SHAPE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)


@dataclass(slots=True)
class UpstreamStream:
    """An upstream stream whose first batch already arrived. Chunks come in batches: the ones
    decoded from one upstream read, written to the client in one write (no syscall per event)."""

    first: list[Chunk] | bytes
    rest: AsyncIterator[list[Chunk] | bytes]  # bytes: a read relayed as is (see passthrough)
    translator: StreamTranslator


def translate(
    decode: Callable[[bytes], list[SSEEvent]], data: bytes, translator: StreamTranslator
) -> tuple[list[Chunk], BaseException | None]:
    """Chunks from one upstream read, and the failure that cut the read short, if any: the chunks
    before a failing event still reach the client, then the failure does."""
    batch: list[Chunk] = []
    try:
        for event in decode(data):
            batch.extend(translator.feed(event))
    except (GatewayError, *SHAPE_ERRORS) as exc:
        return batch, exc
    return batch, None


def relay_read(
    data: bytes, decoder: SSEDecoder, translator: StreamTranslator
) -> tuple[bytes, BaseException | None]:
    """One upstream read as client bytes, in one piece (one write): the events the translator
    passes through as they came, the others decoded, translated and encoded again, in order."""
    head = b""
    if not decoder.idle:
        # Finish the event the previous read cut short; from its end on, relay again.
        end = data.find(b"\n\n") + 2
        if end == 1:
            head, data = data, b""
        else:
            head, data = data[:end], data[end:]
    out = b""
    if head:
        chunks, failure = translate(decoder.feed, head, translator)
        out = encode_chunks(chunks)
        if failure is not None or translator.done or not data:
            return out, failure
    relayed = translator.passthrough(data) if decoder.idle else 0
    if relayed == len(data) and not out:
        return data, None  # the usual read: relayed whole, no copy
    if relayed:
        out += data[:relayed]
        data = data[relayed:]
        if not data:
            return out, None
    chunks, failure = translate(decoder.feed, data, translator)
    return out + encode_chunks(chunks), failure


def plan(ctx: RequestContext, target: Target) -> tuple[NativeCall | None, UpstreamRequest]:
    """The upstream request for one target: a dialect's native relay, or the canonical request
    built by the adapter (from the body the dialect chose for this target, if any)."""
    op = ctx.op
    if op is None:
        raise GatewayError("No operation for this request.")
    body = ctx.body
    if op.dialect is not None:
        call = op.dialect.upstream(op, ctx, target)
        if isinstance(call, NativeCall):
            return call, call.request
        body = call
    return None, target.provider.adapter.build_request(op.canonical, body, target.model)


class Dispatcher:
    def __init__(self, hooks: Hooks, scrubber: Scrubber | None = None) -> None:
        self.hooks = hooks
        self.scrubber = scrubber or Scrubber()
        self._on_attempt = hooks.has("gateway_upstream_attempt")
        self._on_attempt_done = hooks.has("gateway_upstream_attempt_done")
        # Before a fallback target's first attempt (e.g. to charge its provider's rate limit).
        self._fallback = self._fallback_hook if hooks.has("gateway_fallback") else None

    # Plain functions returning the coroutine: no coroutine layer of their own, which every
    # resumption of the request would pass through.
    def send(self, ctx: RequestContext) -> Awaitable[dict[str, Any]]:
        return through_targets(ctx, self._send_once, self._fallback)

    def open_stream(self, ctx: RequestContext, raw_ok: bool = False) -> Awaitable[UpstreamStream]:
        """``raw_ok``: nobody wraps the chunks, so reads the translator passes through may be
        relayed as raw bytes."""
        return through_targets(ctx, partial(self._stream_once, raw_ok=raw_ok), self._fallback)

    def _fallback_hook(self, ctx: RequestContext, target: Target) -> Awaitable[None]:
        return self.hooks.all("gateway_fallback", ctx=ctx, target=target)

    def _begin(self, ctx: RequestContext, target: Target, stream: bool, panic: bool) -> Attempt:
        """Admission (concurrency limit; the circuit was asked once per target, in
        ``gateway.fallback``) and the attempt hook. After this returns, the caller must end the
        attempt with ``_end`` whatever happens."""
        provider = target.provider
        if ctx.op is not None and ctx.op.canonical.name not in provider.adapter.operations:
            raise UnsupportedOperation(
                f"Provider '{provider.name}' does not support the {ctx.op.path} endpoint", param="model"
            )
        limit = provider.config.pool.max_concurrent_requests
        if limit is not None and provider.in_flight >= limit:
            raise ServiceUnavailableError(
                f"{provider.name}: too many concurrent upstream requests", provider=provider.name
            )
        ctx.attempts += 1
        ctx.target = target
        ctx.provider = provider.name
        attempt = Attempt(provider.name, provider.type, target.model, ctx.attempts, stream, panic=panic)
        if self._on_attempt:
            self.hooks.notify("gateway_upstream_attempt", ctx, attempt)
        return attempt

    def _end(
        self, ctx: RequestContext, provider: Provider, attempt: Attempt, error: BaseException | None,
        ended: float | None = None,
    ) -> None:
        if isinstance(error, asyncio.CancelledError):
            # The client went away: says nothing about the vendor; frees a half-open probe.
            provider.breaker.cancel_probe()
            if self._on_attempt_done:
                self.hooks.notify("gateway_upstream_attempt_done", ctx, attempt, CLIENT_CLOSED)
            return
        if error is not None and not isinstance(error, GatewayError):
            error = UpstreamProtocolError(f"{provider.name}: upstream response could not be handled")
        if error is not None:
            self.scrubber.scrub_error(error)  # a vendor's 401 may echo the key it was sent
            if error.provider is None:
                error.provider = provider.name
        elapsed = (ended if ended is not None else time.perf_counter()) - attempt.started
        if error is None or not blames_provider(error):
            # Failures count once per request, when the target is given up (``_on_target``).
            provider.breaker.record(True)
            provider.health.observe(True, elapsed)
        elif harms_health(error):
            provider.health.observe(False, elapsed, error.message)
        if self._on_attempt_done:
            self.hooks.notify("gateway_upstream_attempt_done", ctx, attempt, error)

    async def _send_once(self, ctx: RequestContext, target: Target, panic: bool = False) -> dict[str, Any]:
        provider, adapter = target.provider, target.provider.adapter
        op = ctx.op
        if op is None:
            raise GatewayError("No operation for this request.")
        native, req = plan(ctx, target)
        attempt = self._begin(ctx, target, stream=False, panic=panic)
        req.headers.update(attempt.headers)
        error: BaseException | None = None
        provider.in_flight += 1
        try:
            raw = await provider.transport.send(req)
            attempt.status = raw.status
            if raw.status >= 400:
                raise adapter.parse_error(raw.status, raw.body, raw.headers)
            try:
                if native is not None:
                    result = native.parse(raw.body)
                else:
                    result = adapter.parse_response(op.canonical, orjson.loads(raw.body), target.model)
            except SHAPE_ERRORS as exc:
                raise UpstreamProtocolError(f"{provider.name}: upstream sent a malformed response") from exc
            if native is not None or adapter.relays_response_bytes:
                ctx.response_bytes = raw.body
        except BaseException as exc:
            error = exc
            raise
        finally:
            provider.in_flight -= 1
            if error is not None:
                self._end(ctx, provider, attempt, error)
        self._defer_end(ctx, provider, attempt)
        return result

    async def _stream_once(
        self, ctx: RequestContext, target: Target, raw_ok: bool = False, panic: bool = False
    ) -> UpstreamStream:
        provider, adapter = target.provider, target.provider.adapter
        op = ctx.op
        if op is None:
            raise GatewayError("No operation for this request.")
        native, req = plan(ctx, target)
        if native is not None:
            translator = native.translator()
        else:
            translator = adapter.stream_translator(op.canonical, ctx.body, target.model)
        attempt = self._begin(ctx, target, stream=True, panic=panic)
        req.headers.update(attempt.headers)
        chunks = self._chunks(provider, req, translator, attempt, raw_ok or translator.raw)
        try:
            first = await anext(chunks, [])
        except BaseException as exc:
            try:
                await chunks.aclose()  # the stream's own finally first (in-flight count), as before
            finally:
                self._end(ctx, provider, attempt, exc)
            raise
        self._defer_end(ctx, provider, attempt)
        return UpstreamStream(first, chunks, translator)

    def _defer_end(self, ctx: RequestContext, provider: Provider, attempt: Attempt) -> None:
        """The attempt serves the request: its end waits for ``ctx.settle_attempt()``, so that
        it is not on the client's wait for the first bytes. A failed attempt ends at once: the
        retry that follows must see the circuit it leaves."""
        ctx.pending_end = partial(self._end, ctx, provider, attempt, None, time.perf_counter())

    async def _chunks(
        self, provider: Provider, req: Any, translator: StreamTranslator, attempt: Attempt, raw_ok: bool
    ) -> AsyncIterator[list[Chunk] | bytes]:
        provider.in_flight += 1
        # total_s is checked as each read arrives (reads are bounded by idle_s, writes to the
        # client by its send timeout): no timer to arm and cancel per stream.
        deadline = time.monotonic() + provider.config.timeouts.total_s
        try:
            async with provider.transport.stream(req) as body:
                try:
                    attempt.status = body.status
                    if body.status >= 400:
                        raise provider.adapter.parse_error(body.status, await body.read(), body.headers)
                    decoder = SSEDecoder()
                    read = reader(body)
                    while data := await read():
                        if time.monotonic() > deadline:
                            raise StreamTimeLimitError(f"{provider.name}: stream exceeded the total time limit")
                        if raw_ok:
                            out, failure = relay_read(data, decoder, translator)
                        else:
                            out, failure = translate(decoder.feed, data, translator)
                        if out:
                            yield out
                        if failure is not None:
                            raise failure
                        if translator.done:
                            break
                    else:
                        batch, failure = translate(lambda _: decoder.flush(), b"", translator)
                        if batch:
                            yield batch
                        if failure is not None:
                            raise failure
                    tail = list(translator.finish())
                    if tail:
                        yield tail
                except UPSTREAM_EXCEPTIONS as exc:
                    raise map_exception(provider.name, exc) from exc
                except SHAPE_ERRORS as exc:
                    raise UpstreamProtocolError(f"{provider.name}: upstream sent a malformed stream event") from exc
        except GatewayError as exc:
            self.scrubber.scrub_error(exc)  # a mid-stream vendor error event may echo the key
            if exc.provider is None:
                exc.provider = provider.name
            raise
        finally:
            provider.in_flight -= 1
