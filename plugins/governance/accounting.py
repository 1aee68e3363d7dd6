"""The request path of governance: model permissions and budget admission when a request
arrives, its cost and spend record when it ends. Memory only; the store is never awaited here.

Admission reserves the request's estimated cost (prompt characters / 4 at the input rate, plus
``max_tokens`` x ``n`` — or ``admin.reserve_max_tokens`` — at the output rate) on the key's and
its team's budget counters, all or none. The end settles the reservation to the real cost from
the vendor's usage; a request that failed without usage costs nothing, a client that went away
without usage is charged its estimated prompt. A stream already running when the budget runs out
finishes: the overshoot is at most one request's reservation error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from fnmatch import fnmatchcase

import orjson

from gateway import Outcome, PermissionDeniedError, RateLimitError, RequestContext, StashKey, hookimpl
from plugins.governance.budgets import Counter, Limit
from plugins.governance.pricing import Rates
from plugins.governance.records import KeyRecord, SpendEvent, WindowClock, seconds_to_reset
from plugins.governance.service import Governance

CLIENT_GONE = 499


@dataclass(slots=True)
class Reservation:
    counters: tuple[Counter, ...]
    amount: float
    prompt_cost: float  # what the prompt alone is estimated to cost (charged if the client leaves)
    remote: bool


RESERVATION: StashKey[Reservation] = StashKey("governance.reservation")


def estimate(ctx: RequestContext, rates: Rates | None, default_max_tokens: int) -> tuple[float, float]:
    """(prompt cost, whole reservation) in USD."""
    if rates is None:
        return 0.0, 0.0
    body = ctx.body
    prompt_tokens = len(orjson.dumps(body.get(ctx.op.input_field) if ctx.op else body)) / 4
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    n = body.get("n") or 1
    if not isinstance(max_tokens, int) or not isinstance(n, int):
        max_tokens, n = default_max_tokens, 1
    prompt = prompt_tokens * rates.input + rates.per_request
    return prompt, prompt + max(1, max_tokens) * max(1, n) * rates.output


class Accounting:
    def __init__(self, gov: Governance, check_models: bool) -> None:
        self.gov = gov
        self.check_models = check_models
        self.cost = defaultdict(float)  # (provider, model) -> USD; the cost counters drain it (cost_metrics)
        self.unpriced: dict[tuple[str, str], int] = defaultdict(int)
        self.clock = WindowClock()

    def key_of(self, ctx: RequestContext) -> KeyRecord | None:
        principal = ctx.principal
        if principal is None or not principal.attributes:
            return None
        key_id = principal.attributes.get("key_id")
        return self.gov.index.keys.get(key_id) if key_id else None

    @hookimpl(tryfirst=True)
    async def gateway_request_received(self, ctx: RequestContext) -> None:
        key = self.key_of(ctx)
        if key is None:
            return
        if self.check_models and key.models:
            permit(ctx, key)
        team = self.gov.index.live_team(key.team_id)
        now = time.time()
        limits: list[Limit] = []
        periods: list[str | None] = []
        if key.budget_usd is not None:
            limits.append((("key", key.id, self.clock.label(key.budget_period, now)), key.budget_usd))
            periods.append(key.budget_period)
        if team is not None and team.budget_usd is not None:
            limits.append((("team", team.id, self.clock.label(team.budget_period, now)), team.budget_usd))
            periods.append(team.budget_period)
        if not limits:
            return
        await self.admit(ctx, key, limits, periods, now)

    async def admit(self, ctx: RequestContext, key: KeyRecord, limits: list[Limit], periods: list[str | None],
                    now: float) -> None:
        target = ctx.targets[0] if ctx.targets else None
        rates = self.gov.prices.rates(target.provider.name, target.model) if target is not None else None
        prompt, amount = estimate(ctx, rates, self.gov.reserve_max_tokens)
        remote = self.gov.remote
        if remote is not None:
            failed = await remote.reserve(limits, amount)
        else:
            failed = self.gov.local.reserve(limits, amount)
        if failed is not None:
            period = periods[[c for c, _ in limits].index(failed)]
            raise RateLimitError(
                f"The {failed[0]} budget is used up for this period ({failed[0]} '{failed[1]}').",
                retry_after=seconds_to_reset(period, now), type="insufficient_quota", code="budget_exceeded")
        ctx[RESERVATION] = Reservation(tuple(c for c, _ in limits), amount, prompt,
                                       remote is not None and remote.up)

    @hookimpl(tryfirst=True)
    async def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> None:
        reservation = ctx.get(RESERVATION)
        if outcome.provider is None and reservation is None:
            return  # refused before any vendor was asked: it costs nothing and is not recorded
        cost = self.price(outcome, reservation)
        outcome.cost_usd = cost
        now = time.time()
        key = self.key_of(ctx)
        windows: tuple[Counter, ...] = ()
        team_id = ""
        if key is not None:
            # The spend counts in the current window of the key's period and of its team's (the
            # window a budget is checked against; "all" without a period).
            windows = (("key", key.id, self.clock.label(key.budget_period, now)),)
            team = self.gov.index.teams.get(key.team_id) if key.team_id else None
            if team is not None:
                team_id = team.id
                windows += (("team", team.id, self.clock.label(team.budget_period, now)),)
        if cost:
            self.gov.local.add(windows, cost)
        if reservation is not None:
            await self.settle(reservation, cost or 0.0)
        if outcome.provider is None:
            return
        self.record(ctx, outcome, key, team_id, windows, now)

    def price(self, outcome: Outcome, reservation: Reservation | None) -> float | None:
        usage = outcome.usage
        if outcome.cache == "HIT" or outcome.provider is None:
            return 0.0
        if usage is None:
            if outcome.status == CLIENT_GONE and reservation is not None:
                return reservation.prompt_cost
            return 0.0
        cost = self.gov.prices.cost(outcome.provider, outcome.model or "", usage)
        if cost is not None:
            cost = round(cost, 12)  # float noise off the logs and records (a pico-dollar)
        label = (outcome.provider, outcome.model or "")
        if cost is None:
            self.unpriced[label] += 1
        else:
            self.cost[label] += cost
        return cost

    async def settle(self, reservation: Reservation, cost: float) -> None:
        remote = self.gov.remote
        if remote is not None:
            await remote.settle(reservation.counters, reservation.amount, cost, reservation.remote)
        else:
            self.gov.local.release(reservation.counters, reservation.amount)

    def record(self, ctx: RequestContext, outcome: Outcome, key: KeyRecord | None, team_id: str,
               windows: tuple[Counter, ...], now: float) -> None:
        principal = ctx.principal
        key_id = key.id if key is not None else (f"static:{principal.name}" if principal is not None else "")
        usage = outcome.usage
        self.gov.writer.add(SpendEvent(
            ctx.request_id, key_id, team_id, outcome.provider or "", outcome.model or "",
            usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
            usage.cached_tokens if usage else 0, outcome.cost_usd, outcome.status,
            round(outcome.latency_s * 1000, 3), now, windows))


def permit(ctx: RequestContext, key: KeyRecord) -> None:
    """A key's ``models`` patterns against the requested name, else each resolved target."""
    if ctx.model is not None and any(fnmatchcase(ctx.model, p) for p in key.models):
        return
    allowed = tuple(t for t in ctx.targets if any(fnmatchcase(t.label, p) for p in key.models))
    if not allowed:
        raise PermissionDeniedError(f"The API key '{key.name}' is not allowed to use the model '{ctx.model}'.",
                                    param="model")
    ctx.targets = allowed
