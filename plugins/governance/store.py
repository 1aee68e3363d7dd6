"""The store behind the governance plugin: one interface, SQLite (embedded default) or Postgres.

Nothing on the request path calls it. Admin writes, the change poll (every ``poll_interval_s``),
the spend writer (once a second) and the retention sweep do, each off the event loop (SQLite in
its own thread, asyncpg natively). Every operation is one transaction of plain statements written
once, in SQL both dialects accept (``?`` placeholders are renumbered for Postgres), so the two
backends differ only in how they run a transaction.

Every key or team write takes the next value of the ``meta.seq`` counter (its row lock serialises
writers, so numbers commit in order) and stamps the row with it: a process that has seen
everything up to N reads ``WHERE seq > N`` to catch up.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from plugins.governance.records import ROW, KeyRecord, SpendEvent, TeamRecord, utc_day

Step = tuple[str, Sequence[Any]]  # (sql, args); args a list of tuples for executemany
MANY = "many:"  # a step whose sql starts with this runs executemany

NEXT_SEQ = "UPDATE meta SET value = value + 1 WHERE name = 'seq'"
SEQ = "(SELECT value FROM meta WHERE name = 'seq')"
KEY_COLUMNS = ("id", "digest", "hint", "name", "team_id", "models", "rate_limit", "budget_usd", "budget_period",
               "expires_at", "metadata", "created_at", "updated_at", "revoked_at", "seq")
TEAM_COLUMNS = ("id", "name", "budget_usd", "budget_period", "metadata", "created_at", "updated_at",
                "deleted_at", "seq")
JSON_FIELDS = {"models", "rate_limit", "metadata"}
GROUP_COLUMNS = {"key": "key_id", "team": "team_id", "model": "model", "provider": "provider", "day": "day"}


class StoreError(Exception):
    """The store could not be reached or refused the operation (message holds no credentials)."""


def column_value(name: str, value: Any) -> Any:
    if name in JSON_FIELDS:
        return None if value is None else json.dumps(list(value) if isinstance(value, tuple) else value)
    return value


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    data = dict(zip(KEY_COLUMNS, row, strict=True))
    data["models"] = tuple(json.loads(data["models"] or "[]"))
    data["rate_limit"] = json.loads(data["rate_limit"]) if data["rate_limit"] else None
    data["metadata"] = json.loads(data["metadata"] or "{}")
    return KeyRecord(**data)


def team_from_row(row: Sequence[Any]) -> TeamRecord:
    data = dict(zip(TEAM_COLUMNS, row, strict=True))
    data["metadata"] = json.loads(data["metadata"] or "{}")
    return TeamRecord(**data)


def upsert(table: str, columns: Sequence[str], record: Any) -> Step:
    """Insert or replace a whole record, stamped with the next change number."""
    names = [c for c in columns if c != "seq"]
    values = [column_value(c, getattr(record, c)) for c in names]
    sets = ", ".join(f"{c} = excluded.{c}" for c in names[1:])
    sql = (f"INSERT INTO {table} ({', '.join(names)}, seq) VALUES ({', '.join('?' * len(names))}, {SEQ}) "
           f"ON CONFLICT (id) DO UPDATE SET {sets}, seq = excluded.seq")
    return sql, values


def per_counter(events: Sequence[SpendEvent]) -> dict[tuple[str, str, str], float]:
    """A batch's cost per budget window (scope, id, window)."""
    sums: dict[tuple[str, str, str], float] = defaultdict(float)
    for event in events:
        cost = event.cost_usd or 0.0
        for counter in event.windows:
            sums[counter] += cost
    return sums


def spend_steps(events: Sequence[SpendEvent], now: float,
                windows: dict[tuple[str, str, str], float] | None = None) -> list[Step]:
    """Raw rows, daily rollups and budget windows (``per_counter``, unless the caller has it
    already) for a batch, aggregated before they are written."""
    rollups: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, 0])
    windows = per_counter(events) if windows is None else windows
    rows = []
    days: dict[float, str] = {}  # the events of a batch fall on one or two days: format each once
    for e in events:
        rows.append(e[:ROW])
        day = days.get(e.ts // 86400)
        if day is None:
            day = days[e.ts // 86400] = utc_day(e.ts)
        r = rollups[(day, e.key_id, e.team_id, e.provider, e.model)]
        cost = e.cost_usd
        r[0] += 1
        r[1] += e.input_tokens
        r[2] += e.output_tokens
        r[3] += e.cached_input_tokens
        r[4] += cost or 0.0
        r[5] += cost is None
    return [
        (MANY + "INSERT INTO spend_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows),
        (MANY + "INSERT INTO usage_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (day, key_id, team_id, provider, model) DO UPDATE SET "
                "requests = usage_daily.requests + excluded.requests, "
                "input_tokens = usage_daily.input_tokens + excluded.input_tokens, "
                "output_tokens = usage_daily.output_tokens + excluded.output_tokens, "
                "cached_input_tokens = usage_daily.cached_input_tokens + excluded.cached_input_tokens, "
                "cost_usd = usage_daily.cost_usd + excluded.cost_usd, "
                "unpriced = usage_daily.unpriced + excluded.unpriced",
         [(*k, int(v[0]), int(v[1]), int(v[2]), int(v[3]), float(v[4]), int(v[5])) for k, v in rollups.items()]),
        (MANY + "INSERT INTO budget_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, id, bucket) "
                "DO UPDATE SET cost_usd = budget_usage.cost_usd + excluded.cost_usd, updated_at = excluded.updated_at",
         [(*k, v, now) for k, v in windows.items()]),
    ]


class Store(abc.ABC):
    """Async operations over one of the two backends."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def run(self, steps: Sequence[Step]) -> list[tuple[Any, ...]]:
        """Run ``steps`` in one transaction; the rows of the last one. Raises ``StoreError``."""

    async def save_key(self, record: KeyRecord) -> KeyRecord:
        rows = await self.run([(NEXT_SEQ, ()), upsert("keys", KEY_COLUMNS, record),
                               (f"SELECT {', '.join(KEY_COLUMNS)} FROM keys WHERE id = ?", (record.id,))])
        return key_from_row(rows[0])

    async def save_team(self, record: TeamRecord) -> TeamRecord:
        rows = await self.run([(NEXT_SEQ, ()), upsert("teams", TEAM_COLUMNS, record),
                               (f"SELECT {', '.join(TEAM_COLUMNS)} FROM teams WHERE id = ?", (record.id,))])
        return team_from_row(rows[0])

    async def changes_since(self, seq: int) -> tuple[list[KeyRecord], list[TeamRecord]]:
        """Keys and teams written after change number ``seq`` (all of them for 0). The usual
        answer, nothing new, costs one read of the change counter."""
        latest = await self.run([("SELECT value FROM meta WHERE name = 'seq'", ())])
        if latest and int(latest[0][0]) <= seq:
            return [], []
        teams = await self.run([(f"SELECT {', '.join(TEAM_COLUMNS)} FROM teams WHERE seq > ? ORDER BY seq", (seq,))])
        keys = await self.run([(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys WHERE seq > ? ORDER BY seq", (seq,))])
        return [key_from_row(r) for r in keys], [team_from_row(r) for r in teams]

    async def write_spend(
        self, events: Sequence[SpendEvent], buckets: Sequence[str], since: float,
        windows: dict[tuple[str, str, str], float] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Write a batch in one transaction; then, in it, the budget counters of the given windows
        changed at or after ``since`` (by any process), as ``[(scope, id, bucket, cost_usd)]``.
        ``windows``: the batch's ``per_counter``, when the caller has it already."""
        marks = ", ".join("?" * len(buckets))
        read = (f"SELECT scope, id, bucket, cost_usd FROM budget_usage WHERE updated_at >= ? AND bucket IN ({marks})",
                (since, *buckets))
        steps = spend_steps(events, time.time(), windows) if events else []
        return await self.run([*[s for s in steps if s[1]], read])

    async def spend(self, group_by: str, day_from: str, day_to: str) -> list[dict[str, Any]]:
        column = GROUP_COLUMNS[group_by]
        rows = await self.run([(
            f"SELECT {column}, SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), "
            f"SUM(cost_usd) FROM usage_daily WHERE day >= ? AND day <= ? AND {column} != '' "
            f"GROUP BY {column} ORDER BY SUM(cost_usd) DESC, {column}", (day_from, day_to))])
        return [{"group": r[0], "requests": int(r[1]), "input_tokens": int(r[2]), "output_tokens": int(r[3]),
                 "cached_input_tokens": int(r[4]), "cost_usd": round(float(r[5]), 9)} for r in rows]

    async def prune(self, before_ts: float, batch: int) -> int:
        """Delete about ``batch`` raw spend records older than ``before_ts`` (small transactions keep
        the store responsive); how many older records are left."""
        rows = await self.run([
            ("DELETE FROM spend_log WHERE ts < ? AND ts IN (SELECT ts FROM spend_log WHERE ts < ? "
             "ORDER BY ts LIMIT ?)", (before_ts, before_ts, batch)),
            ("SELECT COUNT(*) FROM spend_log WHERE ts < ?", (before_ts,)),
        ])
        return int(rows[0][0])


def open_store(url: str) -> Store:
    """The backend for ``store.url`` (not yet opened)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from plugins.governance.store_sqlite import SQLiteStore

        return SQLiteStore(url)
    from plugins.governance.store_postgres import PostgresStore

    return PostgresStore(url)


def replace(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)
