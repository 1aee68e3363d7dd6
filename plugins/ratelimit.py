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
from dataclasses import replace
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway import Outcome, RateLimitError, RequestContext, hookimpl
from gateway.config import GatewayConfig
from gateway.keys import REDIS
from gateway.plugin_manager import carry_over, stand_down
from gateway.routing import Target
from gateway.server import first_process
from plugins.ratelimit_backend import Charge, Decision
from plugins.ratelimit_plan import Plan, format_duration, ratelimit_headers, too_many
from plugins.ratelimit_state import (
    CHARGED,
    RATE_LIMIT,
    RateLimitSettings,
    RateLimitState,
    build_state,
    settings_of,
    tokens_for,
)
from plugins.ratelimit_status import limits_health, redis_backend, start_backend
from plugins.ratelimit_tokens import estimate_tokens, spent_tokens
from plugins.store_breaker import STORE_ERRORS

# The plugin's documented helpers (and its state, for tests and benchmarks), kept importable here.
__all__ = ["RATE_LIMIT", "RateLimitSettings", "build_state", "estimate_tokens", "format_duration",
           "ratelimit_headers", "tokens_for"]
log = logging.getLogger("llm_gateway.ratelimit")


async def admit(state: RateLimitState, charges: Sequence[Charge], decision: Decision | None = None) -> Decision:
    """Charge every bucket, waiting (up to ``max_wait_s``) while any lacks room; ``decision``:
    a refusal the backend already answered for these charges."""
    if decision is None:
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


@hookimpl(trylast=True)
def gateway_request_received(ctx: RequestContext) -> Awaitable[None] | None:
    state = ctx.app.get(RATE_LIMIT)
    if state is None:
        return None
    if len(ctx.targets) < 2 or not state.provider_limits:
        # One candidate target: the usual admission goes over the plan's prebuilt forms, decided
        # here and now in memory, or sent to Redis now (with this loop turn's other commands); a
        # refusal (it may wait up to max_wait_s) takes the general way.
        local, remote = state.local, state.remote
        plan = state.plans.of(ctx)
        if not plan.rows:
            return None
        tokens = tokens_for(ctx, state, plan)
        if local is not None:
            afters = local.take_rows(plan.rows, tokens)
            if afters is not None:
                ctx.stash[CHARGED] = [(plan, tokens)]
                plan.put_headers(ctx.response_headers, afters)
                return None
        elif remote is not None and (sent := remote.send(plan, tokens)) is not None:
            return remote_admission(ctx, state, plan, tokens, sent)
    return admission(ctx, state)


async def remote_admission(ctx: RequestContext, state: RateLimitState, plan: Plan, tokens: int,
                           sent: asyncio.Future[list[Any]]) -> None:
    """The usual admission on Redis, from the reply to the plan's call: admitted, its headers
    from the reply's times to empty; refused or failed, the general way's 429, wait or
    ``on_store_error`` from the same reply (no second round trip but a NOSCRIPT's retry)."""
    remote = state.remote
    assert remote is not None
    try:
        reply = await sent
    except STORE_ERRORS as exc:
        charges = plan.charges(tokens)
        reply = await remote.retry(exc, (*plan.admit, str(tokens)))
        decision = await remote.degraded(charges) if reply is None else remote.decision(charges, reply)
    else:
        if remote.admitted(reply):
            ctx.stash[CHARGED] = [(plan, tokens)]
            plan.put_headers(ctx.response_headers, reply, 1e6)  # the script's microseconds
            return
        charges = plan.charges(tokens)
        decision = remote.decision(charges, reply)
    if not decision.admitted:
        decision = await admit(state, charges, decision)
    ctx.stash[CHARGED] = [(plan, tokens)]
    ctx.response_headers.update(ratelimit_headers(decision.views))


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
        ctx.stash[CHARGED] = [(plan, tokens)]
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
    charged.append((plan, tokens))
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
    for plan, tokens in charged:
        served = plan.provider == outcome.provider
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
