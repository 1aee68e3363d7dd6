"""The store's operations against both backends: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugins.governance.records import KeyRecord, SpendEvent, TeamRecord, utc_day
from plugins.governance.store import Store, open_store, replace


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    sqlite = request.param == "sqlite"
    url = f"sqlite:///{tmp_path}/gw.db" if sqlite else request.getfixturevalue("postgres_url")
    s = open_store(url)
    await s.open()
    yield s
    await s.close()


def key(ident: str, **kw: object) -> KeyRecord:
    return KeyRecord(id=ident, digest=ident.encode().hex().ljust(64, "0"), hint="sk-gw-...abcd", name=ident,
                     created_at=1.0, updated_at=1.0, **kw)  # type: ignore[arg-type]


def event(key_id: str, cost: float | None, ts: float, **kw: object) -> SpendEvent:
    base = dict(request_id="r", key_id=key_id, team_id="", provider="p", model="m", input_tokens=10,
                output_tokens=5, cached_input_tokens=2, cost_usd=cost, status=200, latency_ms=1.0, ts=ts)
    return SpendEvent(**{**base, **kw})  # type: ignore[arg-type]


async def test_changes_are_numbered_in_order_and_read_after_a_mark(store: Store) -> None:
    a = await store.save_key(key("a", models=("oai/*",), rate_limit={"requests_per_minute": 5}))
    t = await store.save_team(TeamRecord(id="t", name="team", budget_usd=2.0, budget_period="week"))
    b = await store.save_key(key("b", team_id="t"))
    assert a.seq < t.seq < b.seq
    keys, teams = await store.changes_since(0)
    assert [k.id for k in keys] == ["a", "b"] and teams == [t]
    assert keys[0].models == ("oai/*",) and keys[0].rate_limit == {"requests_per_minute": 5}
    revoked = await store.save_key(replace(a, revoked_at=5.0))
    keys, teams = await store.changes_since(b.seq)
    assert keys == [revoked] and teams == []


async def test_spend_batches_roll_up_by_day_and_group(store: Store) -> None:
    now = time.time()
    yesterday = now - 86400
    counters = (("key", "a", "all"),)
    events = [event("a", 0.5, now, windows=counters), event("a", 0.25, now, model="n", windows=counters),
              event("b", None, yesterday), event("static:ops", 1.0, yesterday, provider="q")]
    totals = await store.write_spend(events, ["all"], 0.0)
    assert totals == [("key", "a", "all", 0.75)]
    by_key = await store.spend("key", "0001-01-01", "9999-12-31")
    assert [(r["group"], r["requests"], r["cost_usd"]) for r in by_key] == [
        ("static:ops", 1, 1.0), ("a", 2, 0.75), ("b", 1, 0.0)]
    assert by_key[1]["input_tokens"] == 20 and by_key[1]["cached_input_tokens"] == 4
    today = await store.spend("model", utc_day(now), utc_day(now))
    assert {r["group"]: r["requests"] for r in today} == {"m": 1, "n": 1}
    assert await store.spend("team", "0001-01-01", "9999-12-31") == []  # no team: no group
    # A second batch adds to the same rollup rows and counters.
    totals = await store.write_spend([event("a", 0.25, now, windows=counters)], ["all"], now - 60)
    assert totals == [("key", "a", "all", 1.0)]


async def test_retention_deletes_old_records_in_batches(store: Store) -> None:
    now = time.time()
    await store.write_spend([event("a", 0.1, now - 40 * 86400 + i, request_id=f"r{i}") for i in range(7)]
                            + [event("a", 0.1, now)], ["all"], 0.0)
    left = await store.prune(now - 30 * 86400, 3)
    assert left == 4
    while left:
        left = await store.prune(now - 30 * 86400, 3)
    rows = await store.run([("SELECT COUNT(*) FROM spend_log", ())])
    assert rows[0][0] == 1
    # Rollups are kept: the day's totals do not depend on the raw records.
    assert (await store.spend("key", "0001-01-01", "9999-12-31"))[0]["requests"] == 8


async def test_migrations_apply_once(store: Store, tmp_path: Path) -> None:
    await store.save_key(key("a"))
    rows = await store.run([("SELECT version FROM schema_migrations", ())])
    assert [r[0] for r in rows] == [1]
