"""Retries and fallbacks: which targets of a route a request tries, how often, and what one
request tells each provider's circuit breaker.

A retry or fallback only ever happens before anything went to the client: a non-stream response
is complete before it is returned, and a stream is returned only once its first chunk arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    blames_provider,
    harms_health,
)

if TYPE_CHECKING:
    from gateway.config import RetryConfig
    from gateway.context import RequestContext
    from gateway.routing import Target

R = TypeVar("R")
# Called before a fallback target's first attempt; raises a GatewayError to pass it over.
Fallback = Callable[["RequestContext", "Target"], Awaitable[object]]
log = logging.getLogger("llm_gateway.dispatch")


class MoveOn(Exception):
    """This target cannot serve the request; the next one may (``error`` says why)."""

    def __init__(self, error: GatewayError) -> None:
        self.error = error


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


def through_targets(
    ctx: RequestContext, once: Callable[..., Awaitable[R]], fallback: Fallback | None = None
) -> Awaitable[R]:
    """Try each target in order; a target whose circuit is open is skipped. If every target
    was skipped for that reason, the request goes to the one that opened first anyway
    ("panic"): an open circuit steers traffic to healthier targets, it never refuses the
    last way to serve a request.

    A plain function: a route with one target (the usual case) gets ``on_target``'s coroutine
    itself, with no coroutine layer of this loop's that every resumption would pass through."""
    targets = ctx.targets
    if len(targets) == 1:
        target = targets[0]
        allowed = target.provider.breaker.allow()
        if not allowed:
            panic(ctx, target)
        return on_target(ctx, target, once, time.monotonic(), True, panic=not allowed)
    return across_targets(ctx, once, fallback)


async def across_targets(ctx: RequestContext, once: Callable[..., Awaitable[R]], fallback: Fallback | None) -> R:
    targets = ctx.targets
    if not targets:
        raise GatewayError("No target to route this request to.")
    started = time.monotonic()
    last: GatewayError | None = None
    shut: list[Target] = []
    for i, target in enumerate(targets):
        if i and time.monotonic() - started > target.provider.config.retry.deadline_s:
            break
        if not target.provider.breaker.allow():
            shut.append(target)
            continue
        is_last = i + 1 == len(targets)
        if i and fallback is not None:
            try:
                await fallback(ctx, target)
            except GatewayError as exc:  # a plugin passed this target over (e.g. its rate limit)
                if is_last:
                    raise
                last = exc
                continue
        try:
            return await on_target(ctx, target, once, started, is_last)
        except MoveOn as move:
            last = move.error
    if last is None and shut:
        target = min(shut, key=lambda t: t.provider.breaker.opened_at)
        panic(ctx, target)
        if target is not targets[0] and fallback is not None:
            await fallback(ctx, target)
        return await on_target(ctx, target, once, started, True, panic=True)
    assert last is not None  # a target was tried, and only leaves through an error
    raise last


def panic(ctx: RequestContext, target: Target) -> None:
    target.provider.breaker.panicked()
    log.warning("every target of %r has an open circuit: sending to %s anyway (panic)",
                ctx.model, target.provider.name)


async def on_target(
    ctx: RequestContext, target: Target, once: Callable[..., Awaitable[R]], started: float,
    is_last: bool, panic: bool = False,
) -> R:
    """The attempts on one target: retryable failures are retried with backoff; a failure that
    blames the provider (or a target that cannot take the request) raises ``MoveOn`` unless this
    is the last target; a failure the client caused is raised at once. However many attempts it
    took, the request is one outcome for the provider's circuit (see docs/resilience.md)."""
    retry = target.provider.config.retry
    harmed: GatewayError | None = None
    try:
        for n in itertools.count():
            try:
                return await once(ctx, target, panic=panic and n == 0)
            except (InvalidRequestError, ServiceUnavailableError) as exc:
                # Refused before sending (unsupported field or endpoint, concurrency limit):
                # another target of an alias may serve it.
                if is_last:
                    raise
                raise MoveOn(exc) from None
            except GatewayError as exc:
                if harms_health(exc):
                    harmed = exc
                if not exc.retryable and (is_last or not blames_provider(exc)):
                    raise
                delay = None if not exc.retryable or n == retry.attempts else backoff_delay(retry, n, exc)
                if delay is None or time.monotonic() - started + delay > retry.deadline_s:
                    if is_last:
                        raise
                    raise MoveOn(exc) from None
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                harmed = None  # the client left: no verdict on the vendor
                raise
        raise AssertionError("unreachable")
    finally:
        breaker = target.provider.breaker
        if ctx.pending_end is not None:
            pass  # served: its success is recorded when the attempt settles
        elif harmed is not None:
            breaker.record(False)  # failed through its retries (a later target may still serve it)
        else:
            breaker.cancel_probe()  # nothing said either way (e.g. a 429): free a half-open probe
