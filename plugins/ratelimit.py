"""Requests- and tokens-per-minute limits at three levels: the whole gateway (top-level
``rate_limit:``), each provider (``providers[].rate_limit``) and each client key
(``auth.keys[].rate_limit``, found by the principal's name).

A request is checked against every limit that applies to it, all or nothing, in
``gateway_request_received`` (after the other plugins there, so it sees the final body and never
charges a request that another check rejects). The provider level uses the first target there;
a fallback target's provider limits are charged in ``gateway_fallback`` before the dispatcher
tries it. Tokens are reserved up front (prompt characters / 4, plus ``max_tokens`` x ``n``, or
``default_max_tokens`` when the request sets none) and settled with the real usage in
``gateway_request_finished``, after the client has its last byte; a cache hit or a failed upstream
call gives its reservation back.

Over a limit: 429 with ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers, unless the buckets
would admit the request within ``max_wait_s``, in which case it waits. Bucket state is behind
``LimiterBackend``: in this process (``backend: memory``, the default; see
``plugins.ratelimit_backend``) or in Redis, shared by every worker and replica (``backend: redis``,
see ``plugins.ratelimit_redis``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from gateway import Outcome, RateLimitError, RequestContext, StashKey, hookimpl
from gateway.config import GatewayConfig, RateLimitSpec
from gateway.keys import REDIS
from gateway.plugin_manager import carry_over, stand_down
from gateway.routing import Target
from gateway.server import first_process
from plugins.ratelimit_backend import Charge, Decision, InProcessBackend, Limit, LimiterBackend
from plugins.ratelimit_keys import RunTimeLimits, make_limits
from plugins.ratelimit_plan import PROVIDER_KEY, Plan, Plans, format_duration, ratelimit_headers, too_many
from plugins.ratelimit_status import limits_health, redis_backend, start_backend
from plugins.ratelimit_tokens import estimate_tokens, spent_tokens

# The plugin's documented helpers, kept importable here.
__all__ = ["estimate_tokens", "format_duration", "ratelimit_headers"]


class RateLimitSettings(RateLimitSpec):
    """The top-level ``rate_limit`` section: the global limits plus options for every level."""

    # Wait up to this long for room instead of answering 429 at once.
    max_wait_s: float = Field(0.0, ge=0, le=300)
    # A bucket holds this many seconds' worth of its rate: 60 lets a
    # whole minute's quota arrive at once; smaller values smooth bursts. Never below one unit.
    window_s: float = Field(60.0, gt=0, le=3600)
    # Where buckets live: this process (memory) or Redis, shared by every worker and replica.
    backend: Literal["memory", "redis"] = "memory"
    # Redis slow or gone: enforce this process's share of each limit (local), admit (open), or 503.
    on_store_error: Literal["local", "open", "closed"] = "local"
    # Replicas of this gateway (pods, hosts) sharing the limits; with the workers of each, the
    # number of processes a limit is divided between under on_store_error: local.
    replicas: int = Field(1, ge=1, le=10_000)
    # Completion tokens reserved for a request that sets no max_tokens (0: the prompt only).
    default_max_tokens: int = Field(0, ge=0)
    # Redis key prefix, so several gateways (or environments) can share one Redis.
    key_prefix: str = Field("llmgw", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True, slots=True)
class RateLimitState:
    backend: LimiterBackend
    max_wait_s: float
    global_limits: tuple[Limit, ...]
    provider_limits: dict[str, tuple[Limit, ...]]
    key_limits: dict[str, tuple[Limit, ...]]
    default_max_tokens: int = 0
    run_time: RunTimeLimits = field(default_factory=lambda: RunTimeLimits(60.0))  # virtual keys' limits
    # The backend when it is this process's memory: an admission then needs no coroutine.
    local: InProcessBackend | None = field(init=False, default=None)
    # Every limit a (key, provider) pair is charged against, laid out once per pair.
    plans: Plans = field(init=False)
    # Per provider, its limits alone: what a fallback target is charged.
    provider_plans: dict[str, Plan] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.backend, InProcessBackend):
            object.__setattr__(self, "local", self.backend)
        object.__setattr__(self, "plans", Plans(self.key_limits, self.limits_for))
        object.__setattr__(self, "provider_plans", {name: Plan.of(limits)
                                                    for name, limits in self.provider_limits.items()})

    def limits_for(self, ctx: RequestContext, target: int = 0) -> tuple[Limit, ...]:
        limits = self.global_limits
        if ctx.targets:
            limits += self.provider_limits.get(ctx.targets[target].provider.name, ())
        if ctx.principal is not None:
            limits += self.key_limits.get(ctx.principal.name) or self.run_time.of(ctx.principal)
        return limits


RATE_LIMIT: web.AppKey[RateLimitState] = web.AppKey("llm_gateway.ratelimit")
# What this request was charged, so the token reservation can be settled once usage is known:
# per admission, (the plan charged, its token estimate, the provider it was charged for).
CHARGED: StashKey[list[tuple[Plan, int, str | None]]] = StashKey("ratelimit.charged")
log = logging.getLogger("llm_gateway.ratelimit")


def settings_of(config: GatewayConfig) -> RateLimitSettings:
    return config.section("rate_limit") or RateLimitSettings()


def build_state(config: GatewayConfig, backend: LimiterBackend | None = None) -> RateLimitState | None:
    settings = settings_of(config)
    w = settings.window_s
    providers = {p.name: make_limits(f"provider '{p.name}'", f"{PROVIDER_KEY}{p.name}", p.rate_limit, w)
                 for p in config.providers}
    keys = {k.name: make_limits(f"key '{k.name}'", f"key:{k.name}", k.rate_limit, w) for k in config.auth.keys}
    state = RateLimitState(
        backend or InProcessBackend(), settings.max_wait_s, make_limits("gateway", "global", settings, w),
        {name: limits for name, limits in providers.items() if limits},
        {name: limits for name, limits in keys.items() if limits},
        settings.default_max_tokens, RunTimeLimits(w),
    )
    # An admin section makes virtual keys, whose limits arrive at run time on their principals.
    run_time_keys = config.section("admin") is not None
    return state if state.global_limits or state.provider_limits or state.key_limits or run_time_keys else None


async def admit(state: RateLimitState, charges: Sequence[Charge]) -> Decision:
    """Charge every bucket, waiting (up to ``max_wait_s``) while any lacks room."""
    decision = await state.backend.acquire(charges)
    if decision.admitted:  # the usual case: no deadline to work out
        return decision
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.max_wait_s
    while True:
        wait = decision.retry_after
        if loop.time() + wait > deadline:
            raise too_many(decision)
        await asyncio.sleep(wait)
        decision = await state.backend.acquire(charges)
        if decision.admitted:
            return decision


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"rate_limit": RateLimitSettings}


@hookimpl
def gateway_check_config(config: GatewayConfig) -> list[tuple[str, str]]:
    settings = config.section("rate_limit")
    if settings is not None and settings.backend == "redis" and config.redis is None:
        return [("rate_limit.backend", "redis needs a top-level redis section (redis.url) to share limits in")]
    return []


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    settings = settings_of(config)
    processes = config.server.workers * settings.replicas

    def build() -> RateLimitState | None:
        state = build_state(config)
        if state is not None and settings.backend == "redis":
            state = replace(state, backend=redis_backend(app[REDIS], settings, processes))
        return state

    # Kept over a configuration reload (buckets, Redis backend and all) when no limit changed.
    limits = (config.section("rate_limit"), config.redis, [(p.name, p.rate_limit) for p in config.providers],
              [(k.name, k.rate_limit) for k in config.auth.keys], config.section("admin") is not None)
    state = carry_over(app, RATE_LIMIT, limits, build)
    if state is None:
        stand_down(app, sys.modules[__name__])  # no limits configured: nothing on the request path
        return
    if settings.backend != "redis" and processes > 1 and first_process():
        log.warning(
            "rate limits are per process: each of %d gateway processes enforces every limit on its own, "
            "so together they admit up to %d times each limit; set rate_limit.backend: redis to share them",
            processes, processes)
    app[RATE_LIMIT] = state
    app.router.add_get("/health/limits", limits_health)


@hookimpl
async def gateway_startup(app: web.Application) -> None:
    state = app.get(RATE_LIMIT)
    if state is not None:
        await start_backend(app, state.backend)


def tokens_for(ctx: RequestContext, state: RateLimitState, plan: Plan) -> int:
    """The request's token estimate, when any of the plan's limits counts tokens."""
    return estimate_tokens(ctx, state.default_max_tokens) if plan.token_limits else 0


def provider_of(ctx: RequestContext, target: int = 0) -> str | None:
    return ctx.targets[target].provider.name if ctx.targets else None


@hookimpl(trylast=True)
def gateway_request_received(ctx: RequestContext) -> Awaitable[None] | None:
    state = ctx.app.get(RATE_LIMIT)
    if state is None:
        return None
    local = state.local
    if local is not None and (len(ctx.targets) < 2 or not state.provider_limits):
        # In memory with one candidate target, the usual admission is decided here and now over
        # the plan's prebuilt rows; a refusal (it may wait up to max_wait_s) takes the general way.
        plan = state.plans.of(ctx)
        if not plan.rows:
            return None
        tokens = tokens_for(ctx, state, plan)
        afters = local.take_rows(plan.rows, tokens)
        if afters is not None:
            ctx.stash[CHARGED] = [(plan, tokens, provider_of(ctx))]
            plan.put_headers(ctx.response_headers, afters)
            return None
    return admission(ctx, state)


async def admission(ctx: RequestContext, state: RateLimitState) -> None:
    # An alias whose first target's provider is out of room spills over to the next target with
    # room; rejected tries charge nothing (admission is all or nothing).
    candidates = range(len(ctx.targets)) if len(ctx.targets) > 1 and state.provider_limits else range(1)
    first_refusal: RateLimitError | None = None
    for i in candidates:
        plan = state.plans.of(ctx, i)
        if not plan.rows:  # nothing limits this target
            ctx.targets = ctx.targets[i:]
            return
        tokens = tokens_for(ctx, state, plan)
        try:
            decision = await admit(state, plan.charges(tokens))
        except RateLimitError as exc:
            first_refusal = first_refusal or exc
            continue
        if i:
            ctx.targets = ctx.targets[i:]
        ctx.stash[CHARGED] = [(plan, tokens, provider_of(ctx))]
        ctx.response_headers.update(ratelimit_headers(decision.views))
        return
    assert first_refusal is not None
    raise first_refusal


@hookimpl
async def gateway_fallback(ctx: RequestContext, target: Target) -> None:
    """A fallback target is served under its own provider's limits: charge them before it is
    tried (the global and key limits were charged once, at admission)."""
    state = ctx.app.get(RATE_LIMIT)
    plan = state.provider_plans.get(target.provider.name) if state is not None else None
    if plan is None:
        return
    tokens = tokens_for(ctx, state, plan)  # type: ignore[arg-type]
    decision = await admit(state, plan.charges(tokens))  # type: ignore[arg-type]
    charged = ctx.get(CHARGED)
    if charged is None:
        charged = ctx[CHARGED] = []
    charged.append((plan, tokens, target.provider.name))
    ctx.response_headers.update(ratelimit_headers(decision.views))


@hookimpl
def gateway_request_finished(ctx: RequestContext, outcome: Outcome) -> None:
    """Settle token reservations with the real usage. A provider's charges for an attempt that
    did not serve the request (a fallback followed) are given back in full."""
    charged = ctx.stash.get(CHARGED)
    if not charged:
        return
    spent = spent_tokens(outcome)  # None: unknown, the reservation stands
    adjustments = []
    for plan, tokens, provider in charged:
        served = provider == outcome.provider
        for limit, capacity, everyone in plan.token_limits:
            amount = tokens if tokens <= capacity else capacity  # as charged
            used = (amount if spent is None else spent) if served or everyone else 0
            if used != amount:
                adjustments.append((limit, used - amount))
    if adjustments:
        ctx.app[RATE_LIMIT].backend.settle(ctx.request_id, adjustments)


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    state = app.get(RATE_LIMIT)
    if state is not None:
        await state.backend.close()
