"""The coarse deadline clock behind the upstream's whole-request limits (``gateway.deadlines``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.deadlines import MAX_TICK_S, MIN_TICK_S, Deadlines


async def test_a_wait_past_its_deadline_becomes_a_timeout_within_a_tick():
    d = Deadlines(0.2)
    assert d.tick_s == MIN_TICK_S
    started = time.monotonic()
    with pytest.raises(TimeoutError), d.watch(started + 0.1):
        await asyncio.sleep(5)
    assert 0.1 <= time.monotonic() - started < 0.1 + 2 * d.tick_s + 0.1
    assert not d.watches
    assert asyncio.current_task().cancelling() == 0  # the task is usable afterwards
    await asyncio.sleep(0.01)


async def test_a_wait_that_ends_in_time_is_untouched_and_the_clock_stops_when_idle():
    d = Deadlines(0.2)
    with d.watch(time.monotonic() + 0.3) as w:
        await asyncio.sleep(0.01)
    assert not w.fired and not d.watches
    await asyncio.sleep(2 * d.tick_s)
    assert d._timer is None  # no timer runs without watches


async def test_the_deadline_can_move_while_waiting():
    d = Deadlines(0.4)
    assert d.tick_s == pytest.approx(0.02)
    assert Deadlines(60).tick_s == MAX_TICK_S == 1.0
    with d.watch(time.monotonic() + 0.05) as w:
        w.deadline = time.monotonic() + 5  # e.g. the head arrived: now only the total applies
        await asyncio.sleep(0.2)
    assert not w.fired


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    d = Deadlines(0.2)

    async def waits() -> None:
        with d.watch(time.monotonic() + 0.05):
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()  # client gone before the deadline
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not d.watches


async def test_only_the_overdue_task_of_many_is_cancelled():
    d = Deadlines(0.2)

    async def waits(limit: float) -> str:
        with d.watch(time.monotonic() + limit):
            await asyncio.sleep(0.3)
        return "done"

    results = await asyncio.gather(waits(0.05), waits(5), waits(5), return_exceptions=True)
    assert isinstance(results[0], TimeoutError) and results[1:] == ["done", "done"]


async def test_close_stops_the_clock():
    d = Deadlines(0.2)
    with d.watch(time.monotonic() + 5):
        assert d._timer is not None
        d.close()
        assert d._timer is None
