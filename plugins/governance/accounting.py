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
from typing import Any

from gateway import Outcome, PermissionDeniedError, RequestContext, StashKey, hookimpl
from plugins.governance.budgets import Counter, LocalLedger
from plugins.governance.plans import Plan, estimate, make_plan, refuse
from plugins.governance.records import KeyRecord, SpendEvent, WindowClock
from plugins.governance.service import Governance

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
    sent: asyncio.Future[Any] | None = None
    at: float = 0.0
    taken: bool = True  # the counters hold ``amount`` (False: no budget to check, or refused)


RESERVATION: StashKey[Reservation] = StashKey("governance.reservation")


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
        plan = self.plans[key_id] = make_plan(key, team, self.clock, index.generation, now, self.gov.local,
                                              self.gov.remote, principal)
        return plan

    @hookimpl(tryfirst=True)
    def gateway_request_received(self, ctx: RequestContext) -> Awaitable[None] | None:
        now = time.time()
        gov = self.gov
        principal = ctx.principal
        plan = self.plans.get(principal.name) if principal is not None else None  # a key's name is its id
        # The usual case (the key's plan is current) without plan_of's attribute look-ups; the
        # principal it was made for (one object per key and change) tells a static key apart.
        if plan is None or plan.principal is not principal or not plan.holds(gov.index.generation, now):
            plan = self.plan_of(ctx, now)
            if plan is None:
                return None
        if self.check_models and plan.key.models:
            permit(ctx, plan.key)
        if not plan.limits:
            ctx.stash[RESERVATION] = Reservation(plan, 0.0, 0.0, False, taken=False)
            return None
        targets = ctx.targets
        rates = gov.prices.rates(targets[0].provider.name, targets[0].model) if targets else None
        prompt, amount = estimate(ctx, rates, gov.reserve_max_tokens)
        remote = gov.remote
        if remote is not None:
            # Sent now, answered in gateway_before_upstream (RemoteAnswers): the rate limiter's
            # admission (and a shared cache's lookup) leave in the same write, so the client waits
            # for one Redis round trip, not one per plugin (docs/scaling-out.md).
            ctx.stash[RESERVATION] = Reservation(plan, amount, prompt, True, remote.begin_reserve(plan.layout, amount),
                                                 now)
            return None
        failed = LocalLedger.reserve(plan.layout, amount)
        if failed is not None:
            refuse(plan, failed, now)
        ctx.stash[RESERVATION] = Reservation(plan, amount, prompt, False)
        return None

    def take(self, reservation: Reservation, refusing: bool) -> Awaitable[None] | None:
        """Take a sent reservation's answer: at once when its reply is in (the usual case: it
        came back with the rate limiter's admission, in the same read), else in a coroutine.
        Refused: nothing was taken, so nothing is settled (the request is still recorded as its
        key's when it ends)."""
        sent = reservation.sent
        assert sent is not None
        if not sent.done() or sent.cancelled() or sent.exception() is not None:
            return self.answered(reservation, refusing)  # waits, loads the script again, or falls back
        reservation.sent = None
        remote = self.gov.remote
        assert remote is not None
        self.took(reservation, remote.answer(sent, reservation.plan.layout), refusing)
        return None

    async def answered(self, reservation: Reservation, refusing: bool) -> None:
        remote = self.gov.remote
        assert remote is not None and reservation.sent is not None
        sent, reservation.sent = reservation.sent, None
        self.took(reservation, await remote.reserved(sent, reservation.plan.layout, reservation.amount), refusing)

    def took(self, reservation: Reservation, failed: Counter | None, refusing: bool) -> None:
        reservation.remote = self.gov.remote.up  # type: ignore[union-attr]
        if failed is not None:
            reservation.amount = reservation.prompt_cost = 0.0
            reservation.taken = False
            if refusing:
                refuse(reservation.plan, failed, reservation.at)

    @hookimpl(tryfirst=True)
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> Awaitable[None] | None:
        reservation = ctx.stash.get(RESERVATION)
        if reservation is not None and reservation.sent is not None:
            # Refused by another plugin before the answer was taken (e.g. the rate limiter).
            pending = self.take(reservation, refusing=False)
            if pending is not None:
                return self.finished_after(pending, ctx, outcome)
        provider = outcome.provider
        if reservation is None:
            if provider is None:
                return None  # refused before any vendor was asked: it costs nothing and is not recorded
            plan = None
        else:
            plan = reservation.plan
            if not reservation.taken and provider is None:
                return None
        now = time.time()
        cost = self.price(outcome, reservation, now) if provider is not None else 0.0
        outcome.cost_usd = cost
        if plan is not None and not plan.holds(self.gov.index.generation, now):
            plan = self.plan_of(ctx, now)  # the day turned, or the key or its team changed, meanwhile
        if provider is not None:
            self.record(ctx, outcome, plan, now)
        windows = plan.window_cells if plan is not None else ()
        if reservation is not None and reservation.taken:
            layout = reservation.plan.layout
            remote = self.gov.remote
            if remote is None:
                LocalLedger.settle(windows, cost or 0.0, layout.cells, reservation.amount)  # add + release
                return None
            if cost:
                LocalLedger.add(windows, cost)
            remote.settle(layout, reservation.amount, cost or 0.0, reservation.remote)
        elif cost:
            LocalLedger.add(windows, cost)
        return None

    async def finished_after(self, pending: Awaitable[None], ctx: RequestContext, outcome: Outcome) -> None:
        await pending
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

    def record(self, ctx: RequestContext, outcome: Outcome, plan: Plan | None, now: float) -> None:
        if plan is not None:
            key_id, team_id, windows = plan.key.id, plan.team_id, plan.windows
        else:
            principal = ctx.principal
            key_id, team_id, windows = (f"static:{principal.name}" if principal is not None else ""), "", ()
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
        return self.accounting.take(reservation, refusing=True)


def permit(ctx: RequestContext, key: KeyRecord) -> None:
    """A key's ``models`` patterns against the requested name, else each resolved target."""
    if ctx.model is not None and any(fnmatchcase(ctx.model, p) for p in key.models):
        return
    allowed = tuple(t for t in ctx.targets if any(fnmatchcase(t.label, p) for p in key.models))
    if not allowed:
        raise PermissionDeniedError(f"The API key '{key.name}' is not allowed to use the model '{ctx.model}'.",
                                    param="model")
    ctx.targets = allowed
