"""Calling upstream: attempts, retries with backoff, fallbacks across an alias's targets, the
circuit breaker, and turning vendor streams into OpenAI chunks.

A retry or fallback only ever happens before anything went to the client: a non-stream response
is complete before it is returned, and a stream is returned only once its first chunk arrived.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gateway.adapter import Chunk, StreamTranslator
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    UnsupportedOperation,
    UpstreamProtocolError,
)
from gateway.secrets import Scrubber
from gateway.sse import SSEDecoder
from gateway.transport import UPSTREAM_EXCEPTIONS, Attempt, map_exception

if TYPE_CHECKING:
    from gateway.config import RetryConfig
    from gateway.context import RequestContext
    from gateway.hookcall import Hooks
    from gateway.registry import Provider
    from gateway.routing import Target

R = TypeVar("R")
# Vendor payloads that do not have the shape an adapter expects surface as these.
SHAPE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)


@dataclass(slots=True)
class UpstreamStream:
    first: Chunk | None
    rest: AsyncIterator[Chunk]
    translator: StreamTranslator


def backoff_delay(retry: RetryConfig, attempt: int, error: GatewayError) -> float | None:
    """Full-jitter exponential backoff; an upstream Retry-After is honoured, and one longer than
    ``max_retry_after_s`` means: do not retry this target (None)."""
    delay = random.uniform(0, min(retry.backoff_max_s, retry.backoff_base_s * (2**attempt)))
    retry_after = error.headers.get("Retry-After") or error.headers.get("retry-after")
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = retry.max_retry_after_s + 1
        if wait > retry.max_retry_after_s:
            return None
        delay = max(delay, wait)
    return delay


class Dispatcher:
    def __init__(self, hooks: Hooks, scrubber: Scrubber | None = None) -> None:
        self.hooks = hooks
        self.scrubber = scrubber or Scrubber()
        self._on_attempt = hooks.has("gateway_upstream_attempt")
        self._on_attempt_done = hooks.has("gateway_upstream_attempt_done")

    async def send(self, ctx: RequestContext) -> dict[str, Any]:
        return await self._with_retries(ctx, self._send_once)

    async def open_stream(self, ctx: RequestContext) -> UpstreamStream:
        return await self._with_retries(ctx, self._stream_once)

    async def _with_retries(
        self, ctx: RequestContext, once: Callable[[RequestContext, Target], Awaitable[R]]
    ) -> R:
        last: GatewayError | None = None
        started = time.monotonic()
        targets = ctx.targets
        for i, target in enumerate(targets):
            provider = target.provider
            if ctx.op is not None and ctx.op.name not in provider.adapter.operations:
                last = UnsupportedOperation(
                    f"Provider '{provider.name}' does not support the {ctx.op.path} endpoint", param="model"
                )
                continue
            retry = provider.config.retry
            for n in range(retry.attempts + 1):
                if not provider.breaker.allow():
                    last = ServiceUnavailableError(
                        f"{provider.name}: temporarily unavailable (circuit open)", provider=provider.name,
                        headers={"Retry-After": str(max(1, round(provider.breaker.retry_after())))},
                    )
                    break
                try:
                    return await once(ctx, target)
                except InvalidRequestError as exc:
                    # The adapter refused the request before sending it (e.g. a field this vendor
                    # cannot honour): another target of the alias may serve it.
                    if i + 1 == len(targets):
                        raise
                    last = exc
                    break
                except GatewayError as exc:
                    if not exc.retryable:
                        raise
                    last = exc
                    if n == retry.attempts:
                        break
                    delay = backoff_delay(retry, n, exc)
                    if delay is None or time.monotonic() - started + delay > retry.deadline_s:
                        break
                    await asyncio.sleep(delay)
            if i + 1 < len(targets) and time.monotonic() - started > targets[i + 1].provider.config.retry.deadline_s:
                break
        assert last is not None
        raise last

    def _begin(self, ctx: RequestContext, target: Target, stream: bool) -> Attempt:
        ctx.attempts += 1
        ctx.target = target
        ctx.provider = target.provider.name
        provider = target.provider
        limit = provider.config.pool.max_concurrent_requests
        if limit is not None and provider.in_flight >= limit:
            raise ServiceUnavailableError(
                f"{provider.name}: too many concurrent upstream requests", provider=provider.name
            )
        attempt = Attempt(provider.name, provider.type, target.model, ctx.attempts, stream)
        if self._on_attempt:
            self.hooks.pm.hook.gateway_upstream_attempt(ctx=ctx, attempt=attempt)
        return attempt

    def _end(self, ctx: RequestContext, provider: Provider, attempt: Attempt, error: GatewayError | None) -> None:
        if error is not None:
            self.scrubber.scrub_error(error)  # a vendor's 401 may echo the key it was sent
            if error.provider is None:
                error.provider = provider.name
        # A request the vendor rejected as invalid says nothing about the vendor's health.
        ok = error is None or not error.retryable
        provider.breaker.record(ok)
        provider.health.observe(ok, time.perf_counter() - attempt.started, None if ok else error.message)
        if self._on_attempt_done:
            self.hooks.pm.hook.gateway_upstream_attempt_done(ctx=ctx, attempt=attempt, error=error)

    async def _send_once(self, ctx: RequestContext, target: Target) -> dict[str, Any]:
        provider, adapter = target.provider, target.provider.adapter
        assert ctx.op is not None
        req = adapter.build_request(ctx.op, ctx.body, target.model)
        attempt = self._begin(ctx, target, stream=False)
        req.headers.update(attempt.headers)
        error: GatewayError | None = None
        provider.in_flight += 1
        try:
            raw = await provider.transport.send(req)
            attempt.status = raw.status
            if raw.status >= 400:
                raise adapter.parse_error(raw.status, raw.body, raw.headers)
            try:
                return adapter.parse_response(ctx.op, orjson.loads(raw.body), target.model)
            except SHAPE_ERRORS as exc:
                raise UpstreamProtocolError(f"{provider.name}: upstream sent a malformed response") from exc
        except GatewayError as exc:
            error = exc
            raise
        finally:
            provider.in_flight -= 1
            self._end(ctx, provider, attempt, error)

    async def _stream_once(self, ctx: RequestContext, target: Target) -> UpstreamStream:
        provider, adapter = target.provider, target.provider.adapter
        assert ctx.op is not None
        req = adapter.build_request(ctx.op, ctx.body, target.model)
        translator = adapter.stream_translator(ctx.op, ctx.body, target.model)
        attempt = self._begin(ctx, target, stream=True)
        req.headers.update(attempt.headers)
        chunks = self._chunks(provider, req, translator, attempt)
        error: GatewayError | None = None
        try:
            first = await anext(chunks, None)
        except GatewayError as exc:
            error = exc
            await chunks.aclose()
            raise
        except BaseException:
            await chunks.aclose()
            raise
        finally:
            self._end(ctx, provider, attempt, error)
        return UpstreamStream(first, chunks, translator)

    async def _chunks(
        self, provider: Provider, req: Any, translator: StreamTranslator, attempt: Attempt
    ) -> AsyncIterator[Chunk]:
        provider.in_flight += 1
        try:
            async with provider.transport.stream(req) as body:
                attempt.status = body.status
                if body.status >= 400:
                    raise provider.adapter.parse_error(body.status, await body.read(), body.headers)
                decoder = SSEDecoder()
                try:
                    async for data in body.iter_any():
                        for event in decoder.feed(data):
                            for chunk in translator.feed(event):
                                yield chunk
                        if translator.done:
                            break
                    else:
                        for event in decoder.flush():
                            for chunk in translator.feed(event):
                                yield chunk
                    for chunk in translator.finish():
                        yield chunk
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
