"""Requests- and tokens-per-minute limits at three levels: the whole gateway (top-level
``rate_limit:``), each provider (``providers[].rate_limit``) and each client key
(``auth.keys[].rate_limit``, found by the principal's name).

A request is checked against every limit that applies to it, all or nothing, in
``gateway_request_received`` (after the other plugins there, so it sees the final body and never
charges a request that another check rejects). The provider level uses the first target: a
fallback target is not checked again when the dispatcher tries it. Tokens are a cheap estimate up
front (prompt characters / 4, plus ``max_tokens`` x ``n``), corrected with the real usage in
``gateway_request_finished``; a cache hit or a failed upstream call gives its estimate back.

Over a limit: 429 with ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers, unless the buckets
would admit the request within ``max_wait_s``, in which case it waits. Bucket state is behind
``LimiterBackend`` (see ``plugins.ratelimit_backend``), so a shared store can replace the in-process one.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from gateway import Outcome, RateLimitError, RequestContext, StashKey, hookimpl
from gateway.config import GatewayConfig, RateLimitSpec
from gateway.plugin_manager import carry_over, stand_down
from plugins.ratelimit_backend import (
    REQUESTS,
    TOKENS,
    BucketView,
    Charge,
    Decision,
    InProcessBackend,
    Limit,
    LimiterBackend,
)

# Message fields whose text a model reads; others (images, audio, files) are not priced per character.
TEXT_KEYS = frozenset({"content", "text", "tool_calls", "function", "arguments", "name", "refusal"})
CHARS_PER_TOKEN = 4


class RateLimitSettings(RateLimitSpec):
    """The top-level ``rate_limit`` section: the global limits plus options for every level."""

    # Wait up to this long for room instead of answering 429 at once.
    max_wait_s: float = Field(0.0, ge=0, le=300)
    # A bucket holds this many seconds' worth of its rate (aiolimiter's time_period): 60 lets a
    # whole minute's quota arrive at once; smaller values smooth bursts. Never below one unit.
    window_s: float = Field(60.0, gt=0, le=3600)


@dataclass(frozen=True, slots=True)
class RateLimitState:
    backend: LimiterBackend
    max_wait_s: float
    global_limits: tuple[Limit, ...]
    provider_limits: dict[str, tuple[Limit, ...]]
    key_limits: dict[str, tuple[Limit, ...]]

    def limits_for(self, ctx: RequestContext, target: int = 0) -> tuple[Limit, ...]:
        limits = self.global_limits
        if ctx.targets:
            limits += self.provider_limits.get(ctx.targets[target].provider.name, ())
        if ctx.principal is not None:
            limits += self.key_limits.get(ctx.principal.name, ())
        return limits


RATE_LIMIT: web.AppKey[RateLimitState] = web.AppKey("llm_gateway.ratelimit")
# What this request was charged, so the token estimate can be corrected once usage is known.
CHARGED: StashKey[tuple[Charge, ...]] = StashKey("ratelimit.charged")


def make_limits(scope: str, key: str, spec: RateLimitSpec | None, window_s: float) -> tuple[Limit, ...]:
    if spec is None:
        return ()
    pairs = ((REQUESTS, spec.requests_per_minute), (TOKENS, spec.tokens_per_minute))
    return tuple(Limit.of(scope, f"{key}:{kind}", kind, n, window_s) for kind, n in pairs if n)


def build_state(config: GatewayConfig, backend: LimiterBackend | None = None) -> RateLimitState | None:
    settings: RateLimitSettings = config.section("rate_limit") or RateLimitSettings()
    w = settings.window_s
    providers = {p.name: make_limits(f"provider '{p.name}'", f"provider:{p.name}", p.rate_limit, w)
                 for p in config.providers}
    keys = {k.name: make_limits(f"key '{k.name}'", f"key:{k.name}", k.rate_limit, w) for k in config.auth.keys}
    state = RateLimitState(
        backend or InProcessBackend(), settings.max_wait_s, make_limits("gateway", "global", settings, w),
        {name: limits for name, limits in providers.items() if limits},
        {name: limits for name, limits in keys.items() if limits},
    )
    return state if state.global_limits or state.provider_limits or state.key_limits else None


def text_chars(value: Any) -> int:
    """Characters of text in a prompt, messages or embeddings input; a token id counts as 4."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return CHARS_PER_TOKEN
    if isinstance(value, list):
        return sum(text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(text_chars(v) for k, v in value.items() if k in TEXT_KEYS)
    return 0


def estimate_tokens(ctx: RequestContext) -> int:
    body = ctx.body
    prompt = body.get(ctx.op.input_field) if ctx.op is not None else None
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    n = body.get("n") or 1
    if not isinstance(completion, int) or not isinstance(n, int):
        completion, n = 0, 1
    return math.ceil(text_chars(prompt) / CHARS_PER_TOKEN) + completion * max(n, 1)


def format_duration(seconds: float) -> str:
    """OpenAI's style for ``x-ratelimit-reset-*``: ``250ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def ratelimit_headers(views: Sequence[BucketView]) -> dict[str, str]:
    """Per kind, the bucket with the least room left (the one a client should watch)."""
    headers: dict[str, str] = {}
    for kind in (REQUESTS, TOKENS):
        of_kind = [v for v in views if v.limit.kind == kind]
        if not of_kind:
            continue
        tightest = min(of_kind, key=lambda v: v.remaining)
        headers[f"x-ratelimit-limit-{kind}"] = str(tightest.limit.per_minute)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(tightest.remaining)))
        headers[f"x-ratelimit-reset-{kind}"] = format_duration(tightest.reset_s)
    return headers


def too_many(decision: Decision) -> RateLimitError:
    blocking = max(decision.views, key=lambda v: v.wait_s)
    limit = blocking.limit
    wait = decision.retry_after
    return RateLimitError(
        f"Rate limit exceeded: {limit.scope} allows {limit.per_minute} {limit.kind} per minute. "
        f"Retry after {max(1, math.ceil(wait))}s.",
        retry_after=wait, headers=ratelimit_headers(decision.views),
    )


async def admit(state: RateLimitState, charges: Sequence[Charge]) -> Decision:
    """Charge every bucket, waiting (up to ``max_wait_s``) while any lacks room."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.max_wait_s
    while True:
        decision = await state.backend.acquire(charges)
        if decision.admitted:
            return decision
        wait = decision.retry_after
        if loop.time() + wait > deadline:
            raise too_many(decision)
        await asyncio.sleep(wait)


def used_tokens(outcome: Outcome, estimate: float) -> float:
    """What the request really cost: its usage, none for a cache hit or a failed upstream call,
    and the estimate when unknown (a stream without usage, a client that went away)."""
    if outcome.cache == "hit":
        return 0
    if outcome.usage is not None:
        return outcome.usage.total_tokens
    if outcome.status >= 400 and outcome.status != 499:
        return 0
    return estimate


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"rate_limit": RateLimitSettings}


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    # Kept over a configuration reload (buckets and all) when no limit changed.
    limits = (config.section("rate_limit"), config.redis, [(p.name, p.rate_limit) for p in config.providers],
              [(k.name, k.rate_limit) for k in config.auth.keys])
    state = carry_over(app, RATE_LIMIT, limits, lambda: build_state(config))
    if state is None:
        stand_down(app, sys.modules[__name__])  # no limits configured: nothing on the request path
        return
    app[RATE_LIMIT] = state


@hookimpl(trylast=True)
async def gateway_request_received(ctx: RequestContext) -> None:
    state = ctx.app.get(RATE_LIMIT)
    if state is None:
        return
    # An alias whose first target's provider is out of room spills over to the next target with
    # room; rejected tries charge nothing (admission is all or nothing).
    candidates = range(len(ctx.targets)) if len(ctx.targets) > 1 and state.provider_limits else range(1)
    first_refusal: RateLimitError | None = None
    for i in candidates:
        limits = state.limits_for(ctx, i)
        if not limits:  # nothing limits this target
            ctx.targets = ctx.targets[i:]
            return
        tokens = estimate_tokens(ctx) if any(limit.kind == TOKENS for limit in limits) else 0
        charges = tuple(Charge(limit, 1 if limit.kind == REQUESTS else min(tokens, limit.capacity))
                        for limit in limits)
        try:
            decision = await admit(state, charges)
        except RateLimitError as exc:
            first_refusal = first_refusal or exc
            continue
        if i:
            ctx.targets = ctx.targets[i:]
        ctx[CHARGED] = charges
        ctx.response_headers.update(ratelimit_headers(decision.views))
        return
    assert first_refusal is not None
    raise first_refusal


@hookimpl
async def gateway_request_finished(ctx: RequestContext, outcome: Outcome) -> None:
    charges = ctx.get(CHARGED)
    if not charges:
        return
    state = ctx.app[RATE_LIMIT]
    for charge in charges:
        if charge.limit.kind == TOKENS:
            delta = used_tokens(outcome, charge.amount) - charge.amount
            if delta:
                await state.backend.adjust(charge.limit, delta)


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    state = app.get(RATE_LIMIT)
    if state is not None:
        await state.backend.close()
