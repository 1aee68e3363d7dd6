"""The governance records: virtual keys, teams, spend events, and budget periods (UTC windows).

Everything here is plain data: the in-memory index serves requests from these objects, the
stores read and write them, the admin API renders them. A key record holds the SHA-256 digest of
its secret, never the secret.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple

PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: str
    name: str
    budget_usd: float | None = None
    budget_period: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    deleted_at: float | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    digest: str  # hex sha256 of the secret
    hint: str  # "sk-gw-…abcd": enough to recognise a key in a list, useless to call with
    name: str
    team_id: str | None = None
    models: tuple[str, ...] = ()
    rate_limit: dict[str, int] | None = None
    budget_usd: float | None = None
    budget_period: str | None = None
    expires_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None
    seq: int = 0

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class SpendEvent(NamedTuple):
    """One finished request, as written to the spend log and the rollups. No prompt, no answer,
    no key: the key's id (or ``static:<name>`` for a key from gateway.yaml). A tuple whose first
    ``ROW`` fields are the spend log's row, in its column order: a batch's rows are slices."""

    request_id: str
    key_id: str
    team_id: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float | None
    status: int
    latency_ms: float
    ts: float
    # Budget windows this event counts against: (scope, id, window) triples.
    windows: tuple[tuple[str, str, str], ...] = ()


ROW = 12  # SpendEvent's fields that are a spend_log row


def window(period: str | None, now: float) -> str:
    """The label of the budget window that ``now`` falls in: ``day:2026-12-01``,
    ``week:2026-11-30`` (weeks start on Monday), ``month:2026-12``; ``all`` without a period."""
    if period is None:
        return "all"
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    if period == "day":
        return f"day:{day.isoformat()}"
    if period == "week":
        return f"week:{(day - dt.timedelta(days=day.weekday())).isoformat()}"
    return f"month:{day.year:04d}-{day.month:02d}"


class WindowClock:
    """``window`` labels of the current UTC day, computed once a day (every key's budget plan is
    made from them; formatting a date each time costs microseconds)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0  # the UTC day the labels hold for: [start, end)
        self.labels: dict[str | None, str] = {}

    def current(self, now: float) -> dict[str | None, str]:
        """period -> window label at ``now`` (None -> ``all``)."""
        if not self.start <= now < self.end:  # a new day (or a clock stepped back)
            self.start = now - now % 86400
            self.end = self.start + 86400
            self.labels = {p: window(p, now) for p in (*PERIODS, None)}
        return self.labels


def seconds_to_reset(period: str | None, now: float) -> float | None:
    """Seconds until the window of ``period`` that holds ``now`` ends (None: it never resets)."""
    if period is None:
        return None
    today = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = today + dt.timedelta(days=1)
    elif period == "week":
        end = today + dt.timedelta(days=7 - today.weekday())
    else:
        end = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return max(0.0, end.timestamp() - now)


def utc_day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()
