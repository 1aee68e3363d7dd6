"""A reservation's answer taken at once (its reply already in, the usual case) is the answer the
awaited path gives, and settles are taken off in order as they are answered: no callback per
settle, a failed one still marks Redis down and nothing is left unretrieved."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from gateway.config import RedisConfig
from gateway.redis_client import RedisConnections
from plugins.governance.budgets import MICRO, RESERVE, LocalLedger, RedisLedger
from tests.services import RedisServer


def counters(n: int) -> list[tuple[tuple[str, str, str], float]]:
    return [(("key", f"k{n}", "day:2026-12-02"), 1.0), (("team", f"t{n}", "month:2026-12"), 0.5)]


async def test_an_answer_taken_at_once_is_the_awaited_answer(redis_server: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_server.url, timeout_s=2))
    try:
        await conns.client().script_load(RESERVE)
        ledger = RedisLedger(conns.client(), conns.pipeline(), LocalLedger())
        at_once, awaited = ledger.layout(counters(1)), ledger.layout(counters(2))
        for amount in (0.3, 0.3, 0.1, 0.2, 0.0):
            sent = ledger.begin_reserve(at_once, amount)
            await asyncio.wait([sent])
            first = ledger.answer(sent, at_once)
            second = await ledger.reserved(ledger.begin_reserve(awaited, amount), awaited, amount)
            assert (first and first[0]) == (second and second[0])  # the same scope refused, or none
        for scope, one, two in (("key", "k1", "k2"), ("team", "t1", "t2")):
            window = "day:2026-12-02" if scope == "key" else "month:2026-12"
            held = [redis_server.command("GET", f"llmgw:budget:{scope}:{n}:{window}").split(b"\r\n")[1]
                    for n in (one, two)]
            # 0.3 + 0.1 (+ 0.0): the second 0.3 and the 0.2 were refused
            assert held[0] == held[1] == str(int(0.4 * MICRO)).encode()
    finally:
        await conns.close()


async def test_settles_are_taken_off_as_answered_and_a_failed_one_marks_redis_down(
        redis_private: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    conns = RedisConnections(RedisConfig(url=redis_private.url, timeout_s=0.3, connect_timeout_s=0.3))
    try:
        ledger = RedisLedger(conns.client(), conns.pipeline(), LocalLedger())
        layout = ledger.layout(counters(1)[:1])
        assert await ledger.reserve(layout, 0.9) is None
        for _ in range(20):
            ledger.settle(layout, 0.02, 0.01, remote=True)
            await asyncio.wait([ledger.unsettled[-1]])
        ledger.settle(layout, 0.02, 0.01, remote=True)
        assert len(ledger.unsettled) == 1  # the answered ones were taken off by the next settle
        await ledger.drain(2.0)
        assert not ledger.unsettled and ledger.up
        held = redis_private.command("GET", "llmgw:budget:key:k1:day:2026-12-02").split(b"\r\n")[1]
        assert held == str(int(0.9 * MICRO) - 21 * int(0.01 * MICRO)).encode()

        redis_private.kill()
        with caplog.at_level(logging.WARNING):
            ledger.settle(layout, 0.02, 0.01, remote=True)
            await asyncio.wait([ledger.unsettled[-1]], timeout=5)
            ledger.settle(layout, 0.02, 0.01, remote=True)  # takes the failed one off: Redis is down
            assert not ledger.up
            await ledger.drain(2.0)
            assert not ledger.unsettled
            gc.collect()
        assert "Redis unreachable" in caplog.text and "never retrieved" not in caplog.text
    finally:
        await conns.close()
