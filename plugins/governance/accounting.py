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

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, NoReturn

from gateway import Outcome, PermissionDeniedError, Principal, RateLimitError, RequestContext, StashKey, hookimpl
from plugins.governance.budgets import Counter, Limit
from plugins.governance.pricing import Rates
from plugins.governance.records import KeyRecord, SpendEvent, TeamRecord, WindowClock, seconds_to_reset
from plugins.governance.service import Governance
from plugins.prompt_estimate import prompt_chars

CLIENT_GONE = 499


@dataclass(slots=True)
class Reservation:
    """A virtual key's request between admission and its end: its plan (so the end does not look
    it up again) and what was reserved on the plan's counters (nothing when it has no budget)."""

    plan: Plan
    amount: float
    prompt_cost: float  # what the prompt alone is estimated to cost (charged if the client leaves)
    remote: bool
    # A reservation sent to Redis whose answer is not taken yet, and the time it was sent at.
    sent: tuple[asyncio.Future[Any], float] | None = None
    taken: bool = True  # the counters hold ``amount`` (False: no budget to check, or refused)


@dataclass(frozen=True, slots=True)
class Plan:
    """A key's budgets as the request path needs them, made once per key, change of the key index
    and UTC day (``Accounting.plan_of``): the counters checked at admission with their budgets and
    periods, and the windows its spend counts in."""

    key: KeyRecord
    team: TeamRecord | None  # as looked up, live or not: the key's spend counts in its windows
    limits: tuple[Limit, ...]
    periods: tuple[str | None, ...]
    counters: tuple[Counter, ...]
    windows: tuple[Counter, ...]
    generation: int  # the key index's generation it was made at
    since: float  # the UTC day its window labels hold for: [since, until)
    until: float
    team_id: str = ""  # as its spend records name it
    principal: Principal | None = None  # the key's principal it was made for

    def holds(self, generation: int, now: float) -> bool:
        """Current: nothing changed in the key index since it was made (records are replaced on
        every write, and every write bumps the generation) and its UTC day still holds."""
        return self.generation == generation and self.since <= now < self.until


RESERVATION: StashKey[Reservation] = StashKey("governance.reservation")


def estimate(ctx: RequestContext, rates: Rates | None, default_max_tokens: int) -> tuple[float, float]:
    """(prompt cost, whole reservation) in USD."""
    if rates is None:
        return 0.0, 0.0
    body = ctx.body
    prompt_tokens = prompt_chars(ctx) / 4  # text characters, counted once per request
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    n = body.get("n") or 1
    if not isinstance(max_tokens, int) or not isinstance(n, int):
        max_tokens, n = default_max_tokens, 1
    prompt = prompt_tokens * rates.input + rates.per_request
    return prompt, prompt + max(1, max_tokens) * max(1, n) * rates.output


def make_plan(key: KeyRecord, team: TeamRecord | None, clock: WindowClock, generation: int, now: float,
              principal: Principal | None = None) -> Plan:
    # The spend counts in the current window of the key's period and of its team's (the window a
    # budget is checked against; "all" without a period). Only budgets that exist are checked,
    # and a deleted team's is not.
    labels = clock.current(now)
    own = ("key", key.id, labels[key.budget_period])
    limits: list[Limit] = []
    periods: list[str | None] = []
    windows = [own]
    if key.budget_usd is not None:
        limits.append((own, key.budget_usd))
        periods.append(key.budget_period)
    if team is not None:
        theirs = ("team", team.id, labels[team.budget_period])
        windows.append(theirs)
        if team.deleted_at is None and team.budget_usd is not None:
            limits.append((theirs, team.budget_usd))
            periods.append(team.budget_period)
    return Plan(key, team, tuple(limits), tuple(periods), tuple(c for c, _ in limits), tuple(windows),
                generation, clock.start, clock.end, team.id if team is not None else "", principal)


class Accounting:
    """The hooks are plain functions that return a coroutine only when Redis holds the budget
    counters (the hook caller awaits what is awaitable): on the memory path nothing is awaited."""

    def __init__(self, gov: Governance, check_models: bool) -> None:
        self.gov = gov
        self.check_models = check_models
        self.cost = defaultdict(float)  # (provider, model) -> USD; the cost counters drain it (cost_metrics)
        self.unpriced: dict[tuple[str, str], int] = defaultdict(int)
        self.clock = WindowClock()
        self.plans: dict[str, Plan] = {}  # key id -> its plan; at most one per key

    def plan_of(self, ctx: RequestContext, now: float) -> Plan | None:
        """The plan of the request's virtual key as it is now (None: not a virtual key)."""
        principal = ctx.principal
        attributes = principal.attributes if principal is not None else None
        key_id = attributes.get("key_id") if attributes else None
        if key_id is None:
            return None
        plan = self.plans.get(key_id)
        if plan is not None and plan.holds(self.gov.index.generation, now):
            return plan
        index = self.gov.index
        key = index.keys.get(key_id)
        if key is None:
            return None
        team = index.teams.get(key.team_id) if key.team_id else None
        plan = self.plans[key_id] = make_plan(key, team, self.clock, index.generation, now, principal)
        return plan

    @hookimpl(tryfirst=True)
    def gateway_request_received(self, ctx: RequestContext) -> Awaitable[None] | None:
        now = time.time()
        principal = ctx.principal
        plan = self.plans.get(principal.name) if principal is not None else None  # a key's name is its id
        # The usual case (the key's plan is current) without plan_of's attribute look-ups; the
        # principal it was made for (one object per key and change) tells a static key apart.
        if plan is None or plan.principal is not principal or not plan.holds(self.gov.index.generation, now):
            plan = self.plan_of(ctx, now)
            if plan is None:
                return None
        if self.check_models and plan.key.models:
            permit(ctx, plan.key)
        if not plan.limits:
            ctx.stash[RESERVATION] = Reservation(plan, 0.0, 0.0, False, None, False)
            return None
        target = ctx.targets[0] if ctx.targets else None
        rates = self.gov.prices.rates(target.provider.name, target.model) if target is not None else None
        prompt, amount = estimate(ctx, rates, self.gov.reserve_max_tokens)
        remote = self.gov.remote
        if remote is not None:
            # Sent now, answered in gateway_before_upstream (RemoteAnswers): the rate limiter's
            # admission (and a shared cache's lookup) leave in the same write, so the client waits
            # for one Redis round trip, not one per plugin (docs/scaling-out.md).
            sent = remote.begin_reserve(plan.limits, amount)
            ctx.stash[RESERVATION] = Reservation(plan, amount, prompt, True, (sent, now))
            return None
        failed = self.gov.local.reserve(plan.limits, amount)
        if failed is not None:
            refuse(plan, failed, now)
        ctx.stash[RESERVATION] = Reservation(plan, amount, prompt, False)
        return None

    async def answered(self, ctx: RequestContext, reservation: Reservation, refusing: bool) -> None:
        """Take a sent reservation's answer. Refused: nothing was taken, so nothing is settled
        (the request is still recorded as its key's when it ends)."""
        remote = self.gov.remote
        assert remote is not None and reservation.sent is not None
        (sent, now), reservation.sent = reservation.sent, None
        plan = reservation.plan
        failed = await remote.reserved(sent, plan.limits, reservation.amount)
        reservation.remote = remote.up
        if failed is not None:
            reservation.amount = reservation.prompt_cost = 0.0
            reservation.taken = False
            if refusing:
                refuse(plan, failed, now)

    @hookimpl(tryfirst=True)
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> Awaitable[None] | None:
        reservation = ctx.stash.get(RESERVATION)
        provider = outcome.provider
        if reservation is None:
            if provider is None:
                return None  # refused before any vendor was asked: it costs nothing and is not recorded
            plan = None
        elif reservation.sent is not None:
            # Refused by another plugin before the answer was taken (e.g. the rate limiter).
            return self.finished_after_answer(ctx, outcome, reservation)
        else:
            plan = reservation.plan
            if not reservation.taken and provider is None:
                return None
        now = time.time()
        cost = self.price(outcome, reservation, now) if provider is not None else 0.0
        outcome.cost_usd = cost
        if plan is not None and not plan.holds(self.gov.index.generation, now):
            plan = self.plan_of(ctx, now)  # the day turned, or the key or its team changed, meanwhile
        windows = plan.windows if plan is not None else ()
        if provider is not None:
            self.record(ctx, outcome, plan, windows, now)
        local, remote = self.gov.local, self.gov.remote
        if reservation is not None and reservation.taken and remote is None:
            local.settle(windows, cost or 0.0, reservation.plan.counters, reservation.amount)  # add + release
            return None
        if cost:
            local.add(windows, cost)
        if reservation is not None and reservation.taken and remote is not None:
            remote.settle(reservation.plan.counters, reservation.amount, cost or 0.0, reservation.remote)
        return None

    async def finished_after_answer(self, ctx: RequestContext, outcome: Outcome, reservation: Reservation) -> None:
        await self.answered(ctx, reservation, refusing=False)
        pending = self.gateway_request_finished(ctx, outcome)
        if pending is not None:
            await pending

    def price(self, outcome: Outcome, reservation: Reservation | None, now: float) -> float | None:
        """What a request a vendor was asked for cost."""
        usage = outcome.usage
        if outcome.cache == "hit":  # answered from the cache: nothing
            return 0.0
        if usage is None:
            if outcome.status == CLIENT_GONE and reservation is not None:
                return reservation.prompt_cost
            return 0.0
        label = (outcome.provider, outcome.model or "")
        cost = self.gov.prices.cost_of(label, usage, now)
        if cost is None:
            self.unpriced[label] += 1
            return None
        # Float noise off the logs and records (a pico-dollar): round(cost, 12), without the
        # decimal conversion round() makes (the same value but a half-way case within 1e-8 of a
        # pico-dollar, a microsecond less per request).
        cost = round(cost * 1e12) / 1e12
        self.cost[label] += cost
        return cost

    def record(self, ctx: RequestContext, outcome: Outcome, plan: Plan | None, windows: tuple[Counter, ...],
               now: float) -> None:
        principal = ctx.principal
        if plan is not None:
            key_id, team_id = plan.key.id, plan.team_id
        else:
            key_id, team_id = (f"static:{principal.name}" if principal is not None else ""), ""
        usage = outcome.usage
        self.gov.writer.add(SpendEvent(
            ctx.request_id, key_id, team_id, outcome.provider or "", outcome.model or "",
            usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
            usage.cached_tokens if usage else 0, outcome.cost_usd, outcome.status,
            round(outcome.latency_s * 1e6) / 1000, now, windows))  # ms to 3 places, as price() rounds


class RemoteAnswers:
    """``gateway_before_upstream``, registered only with a ``redis:`` section (only then does a
    reservation wait for an answer): the memory path does not call it."""

    def __init__(self, accounting: Accounting) -> None:
        self.accounting = accounting

    @hookimpl
    def gateway_before_upstream(self, ctx: RequestContext) -> Awaitable[None] | None:
        """The answer of a reservation sent to Redis at admission: a refusal is the 429."""
        reservation = ctx.stash.get(RESERVATION)
        if reservation is None or reservation.sent is None:
            return None
        return self.accounting.answered(ctx, reservation, refusing=True)


def refuse(plan: Plan, failed: Counter, now: float) -> NoReturn:
    period = plan.periods[plan.counters.index(failed)]
    raise RateLimitError(
        f"The {failed[0]} budget is used up for this period ({failed[0]} '{failed[1]}').",
        retry_after=seconds_to_reset(period, now), type="insufficient_quota", code="budget_exceeded")


def permit(ctx: RequestContext, key: KeyRecord) -> None:
    """A key's ``models`` patterns against the requested name, else each resolved target."""
    if ctx.model is not None and any(fnmatchcase(ctx.model, p) for p in key.models):
        return
    allowed = tuple(t for t in ctx.targets if any(fnmatchcase(t.label, p) for p in key.models))
    if not allowed:
        raise PermissionDeniedError(f"The API key '{key.name}' is not allowed to use the model '{ctx.model}'.",
                                    param="model")
    ctx.targets = allowed
