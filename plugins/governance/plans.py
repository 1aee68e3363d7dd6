"""A virtual key's budget plan: what its requests check at admission and where their spend
counts, worked out once per key, change of the key index and UTC day, laid out for the ledger
(its counters' cells, and with Redis the fixed parts of the reservation and settle commands); and
the admission's estimate and refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from gateway import Principal, RateLimitError, RequestContext
from plugins.governance.budgets import Cell, Counter, Layout, Limit, LocalLedger, RedisLedger
from plugins.governance.pricing import Rates
from plugins.governance.records import KeyRecord, TeamRecord, WindowClock, seconds_to_reset
from plugins.prompt_estimate import CHARS_PER_TOKEN, asked_completion, prompt_chars


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
    layout: Layout  # ``limits`` laid out for the ledger: cells, and the Redis commands' fixed parts
    window_cells: tuple[Cell, ...]  # ``windows``' cells in this process's ledger
    team_id: str = ""  # as its spend records name it
    principal: Principal | None = None  # the key's principal it was made for

    def holds(self, generation: int, now: float) -> bool:
        """Current: nothing changed in the key index since it was made (records are replaced on
        every write, and every write bumps the generation) and its UTC day still holds."""
        return self.generation == generation and self.since <= now < self.until


def estimate(ctx: RequestContext, rates: Rates | None, default_max_tokens: int) -> tuple[float, float]:
    """(prompt cost, whole reservation) in USD."""
    if rates is None:
        return 0.0, 0.0
    prompt_tokens = prompt_chars(ctx) / CHARS_PER_TOKEN  # text characters, counted once per request
    max_tokens, n = asked_completion(ctx.body, default_max_tokens) or (default_max_tokens, 1)
    prompt = prompt_tokens * rates.input + rates.per_request
    # max(1, max_tokens) * max(1, n), without two calls of the builtin on every request
    return prompt, prompt + (max_tokens if max_tokens > 0 else 1) * (n if n > 0 else 1) * rates.output


def make_plan(key: KeyRecord, team: TeamRecord | None, clock: WindowClock, generation: int, now: float,
              local: LocalLedger, remote: RedisLedger | None, principal: Principal | None = None) -> Plan:
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
    # Laid out for the ledger in use: the counters' cells, and with Redis its commands' fixed parts.
    layout = remote.layout(limits) if remote is not None else local.layout(limits)
    return Plan(key, team, tuple(limits), tuple(periods), layout.counters, tuple(windows), generation,
                clock.start, clock.end, layout, tuple(local.cell(c) for c in windows),
                team.id if team is not None else "", principal)


def refuse(plan: Plan, failed: Counter, now: float) -> NoReturn:
    period = plan.periods[plan.counters.index(failed)]
    raise RateLimitError(
        f"The {failed[0]} budget is used up for this period ({failed[0]} '{failed[1]}').",
        retry_after=seconds_to_reset(period, now), type="insufficient_quota", code="budget_exceeded")
