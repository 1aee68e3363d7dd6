"""The budget counters as the request path holds them: a plan's cells and, with Redis, its commands'
fixed parts, laid out once. Everything a request does through them matches what the counters by
name say (``spent``, ``used``, the views), a store sync reaches the cells plans hold, and the
Redis commands are the ones the general path spelled per request."""

from __future__ import annotations

import pytest

from plugins.governance.budgets import MICRO, RESERVE_SHA, SETTLE, TTL_S, Layout, LocalLedger, RedisLedger

DAY, MONTH = "day:2026-12-02", "month:2026-12"
KEY, TEAM = ("key", "k1", DAY), ("team", "t1", MONTH)
CURRENT = (DAY, "week:2026-11-30", MONTH, "all")


def test_a_reservation_is_all_or_nothing_and_a_full_counter_refuses_even_nothing() -> None:
    ledger = LocalLedger()
    layout = ledger.layout([(KEY, 1.0), (TEAM, 0.5)])
    assert ledger.reserve(layout, 0.3) is None
    assert ledger.used(KEY) == ledger.used(TEAM) == pytest.approx(0.3)
    assert ledger.reserve(layout, 0.3) == TEAM  # the team has 0.2 left: the key is not charged either
    assert ledger.reserved == {KEY: pytest.approx(0.3), TEAM: pytest.approx(0.3)}
    ledger.settle(layout.cells, 0.5, layout.cells, 0.3)  # the request cost 0.5: the team is full
    assert ledger.reserved == {} and ledger.spent(TEAM) == pytest.approx(0.5)
    assert ledger.reserve(layout, 0.0) == TEAM
    ledger.release(layout.cells, 1.0)  # more than held: nothing goes below zero
    assert ledger.used(KEY) == pytest.approx(0.5)


def test_plans_share_a_counter_s_cell_and_a_sync_reaches_it() -> None:
    ledger = LocalLedger()
    first, second = ledger.layout([(KEY, 1.0)]), ledger.layout([(KEY, 2.0), (TEAM, 5.0)])
    assert first.cells[0] is second.cells[0] is ledger.cell(KEY)
    ledger.add(first.cells, 0.25)
    # The store's totals after a flush of that 0.25 (with 0.5 from another process).
    ledger.synced({KEY: 0.25}, [("key", "k1", DAY, 0.75)], full=False, current=CURRENT)
    assert (second.cells[0].baseline, second.cells[0].pending) == (0.75, 0.0)
    assert ledger.spent(KEY) == 0.75 and ledger.spent(TEAM) == 0.0
    assert ledger.reserve(first, 0.3) == KEY  # 0.75 + 0.3 > 1.0


def test_a_full_sync_drops_only_idle_counters_of_past_windows() -> None:
    ledger = LocalLedger()
    past = ("key", "k1", "day:2026-12-01")
    held, current = ledger.layout([(past, 1.0)]), ledger.layout([(KEY, 1.0)])
    idle = ledger.cell(("key", "k2", "day:2026-12-01"))
    assert ledger.reserve(held, 0.1) is None  # a request from yesterday still in flight
    idle.baseline = 0.4
    ledger.synced({}, [("team", "t1", MONTH, 2.0)], full=True, current=CURRENT)
    assert set(ledger.cells) == {past, KEY, TEAM}  # k2's yesterday is gone; today's k1 kept though idle
    assert ledger.cell(KEY) is current.cells[0] and ledger.spent(TEAM) == 2.0
    assert ledger.used(past) == pytest.approx(0.1) and ledger.spent(past) == 0.0


def test_the_redis_commands_are_laid_out_once_per_plan() -> None:
    ledger = RedisLedger(None, None, LocalLedger())  # type: ignore[arg-type]  # only laid out, nothing sent
    layout = ledger.layout([(KEY, 1.0), (TEAM, 0.5)])
    keys = (b"llmgw:budget:key:k1:" + DAY.encode(), b"llmgw:budget:team:t1:" + MONTH.encode())
    assert layout.reserve_head == ("EVALSHA", RESERVE_SHA, 2, *keys, TTL_S, 1 * MICRO, MICRO // 2)
    assert layout.settle_head == ("EVAL", SETTLE, 2, *keys)
    assert Layout([(KEY, 1.0)], LocalLedger()).reserve_head == ()  # the memory path sends nothing


def test_a_reservation_sends_the_plan_s_command_with_this_request_s_seeds() -> None:
    sent: list[tuple[object, ...]] = []

    class Pipe:
        def call(self, *args: object) -> None:
            sent.append(args)

    local = LocalLedger()
    ledger = RedisLedger(None, Pipe(), local)  # type: ignore[arg-type]
    layout = ledger.layout([(KEY, 1.0), (TEAM, 0.5)])
    local.cell(KEY).baseline, local.cell(KEY).pending, local.cell(TEAM).pending = 0.125, 0.25, 0.0625
    ledger.begin_reserve(layout, 0.01)
    assert sent == [(*layout.reserve_head, int(0.375 * MICRO), int(0.0625 * MICRO), int(0.01 * MICRO))]
