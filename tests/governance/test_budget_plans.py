"""A key's budget plan (its counters, budgets and windows) is made once and reused, and made again
as soon as anything it was made from changes: the key, its team, or the UTC day."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

from gateway import Principal, RequestContext
from plugins.governance.accounting import Accounting
from plugins.governance.budgets import LocalLedger
from plugins.governance.records import KeyRecord, TeamRecord, window
from plugins.governance.virtual_keys import KeyIndex

TEAM = TeamRecord(id="team_a", name="a", budget_usd=50.0, budget_period="month")
KEY = KeyRecord(id="key_a", digest="00" * 32, hint="sk-gw-...", name="a", team_id="team_a", budget_usd=5.0,
                budget_period="day")


def setup() -> tuple[Accounting, KeyIndex, RequestContext]:
    index = KeyIndex()
    index.apply([KEY], [TEAM])
    accounting = Accounting(SimpleNamespace(index=index, local=LocalLedger(), remote=None), check_models=False)  # type: ignore[arg-type]
    ctx = RequestContext(None, None, "req_1")  # type: ignore[arg-type]
    ctx.principal = index.principals[KEY.id]
    return accounting, index, ctx


def test_a_plan_is_reused_until_its_key_or_team_changes() -> None:
    accounting, index, ctx = setup()
    now = time.time()
    plan = accounting.plan_of(ctx, now)
    assert plan is not None and plan.limits == ((("key", "key_a", window("day", now)), 5.0),
                                                (("team", "team_a", window("month", now)), 50.0))
    assert accounting.plan_of(ctx, now) is plan  # nothing changed: the same object, nothing made
    index.apply([], [])  # a poll that found nothing
    assert accounting.plan_of(ctx, now) is plan

    index.apply([dataclasses.replace(KEY, budget_usd=7.0, budget_period="week")], [])
    changed = accounting.plan_of(ctx, now)
    assert changed is not None and changed.limits[0] == (("key", "key_a", window("week", now)), 7.0)

    index.apply([], [dataclasses.replace(TEAM, deleted_at=now)])  # a deleted team's budget is not checked
    gone = accounting.plan_of(ctx, now)
    assert gone is not None and [c[0] for c, _ in gone.limits] == ["key"]
    assert gone.windows[1] == ("team", "team_a", window("month", now))  # its spend still counts there


def test_a_plan_is_made_again_when_the_utc_day_turns() -> None:
    accounting, _, ctx = setup()
    midnight = (time.time() // 86400 + 1) * 86400
    before = accounting.plan_of(ctx, midnight - 0.001)
    after = accounting.plan_of(ctx, midnight)
    assert before is not None and after is not None
    assert before.counters[0] == ("key", "key_a", window("day", midnight - 0.001))
    assert after.counters[0] == ("key", "key_a", window("day", midnight)) != before.counters[0]


def test_static_and_anonymous_requests_have_no_plan() -> None:
    accounting, _, ctx = setup()
    ctx.principal = Principal("bench")
    assert accounting.plan_of(ctx, time.time()) is None
    ctx.principal = None
    assert accounting.plan_of(ctx, time.time()) is None


def test_a_keys_principal_is_made_once_per_change_and_dropped_when_revoked() -> None:
    index = KeyIndex()
    index.apply([dataclasses.replace(KEY, rate_limit={"requests_per_minute": 3})], [TEAM])
    first = index.principals[KEY.id]
    assert first.attributes["rate_limit"].requests_per_minute == 3
    index.apply([], [])
    assert index.principals[KEY.id] is first
    index.apply([dataclasses.replace(KEY, rate_limit={"requests_per_minute": 4})], [])
    assert index.principals[KEY.id].attributes["rate_limit"].requests_per_minute == 4
    index.apply([dataclasses.replace(KEY, revoked_at=time.time())], [])
    assert KEY.id not in index.principals
