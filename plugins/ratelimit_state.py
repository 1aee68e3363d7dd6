"""The rate limiter's settings and its state for one configuration: every limit that applies,
where the buckets live, and the plans a request is charged by (``plugins.ratelimit_plan``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from pydantic import Field

from gateway import RequestContext, StashKey
from gateway.config import GatewayConfig, RateLimitSpec
from plugins.ratelimit_backend import InProcessBackend, Limit, LimiterBackend
from plugins.ratelimit_keys import RunTimeLimits, make_limits
from plugins.ratelimit_plan import PROVIDER_KEY, Plan, Plans
from plugins.ratelimit_redis import RedisBackend
from plugins.ratelimit_tokens import estimate_tokens


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
    # The backend when it is Redis: the usual admission sends its plan's prebuilt call.
    remote: RedisBackend | None = field(init=False, default=None)
    # Every limit a (key, provider) pair is charged against, laid out once per pair.
    plans: Plans = field(init=False)
    # Per provider, its limits alone: what a fallback target is charged.
    provider_plans: dict[str, Plan] = field(init=False)

    def __post_init__(self) -> None:
        prefix = None
        if isinstance(self.backend, InProcessBackend):
            object.__setattr__(self, "local", self.backend)
        elif isinstance(self.backend, RedisBackend):
            object.__setattr__(self, "remote", self.backend)
            prefix = self.backend.prefix
        object.__setattr__(self, "plans", Plans(self.key_limits, self.limits_for, prefix))
        object.__setattr__(self, "provider_plans", {name: Plan.of(limits, name, prefix)
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
# per admission, the plan charged (its provider with it) and its token estimate.
CHARGED: StashKey[list[tuple[Plan, int]]] = StashKey("ratelimit.charged")


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


def tokens_for(ctx: RequestContext, state: RateLimitState, plan: Plan) -> int:
    """The request's token estimate, when any of the plan's limits counts tokens."""
    return estimate_tokens(ctx, state.default_max_tokens) if plan.token_limits else 0


