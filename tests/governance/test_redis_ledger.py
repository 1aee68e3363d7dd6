"""Budget counters in a real redis-server: all-or-nothing reservations, settles, the script loaded
again after a restart, and the local ledger while Redis is unreachable, within the command bound."""

from __future__ import annotations

import time

from gateway.config import RedisConfig
from gateway.redis_client import RedisConnections
from plugins.governance.budgets import MICRO, LocalLedger, RedisLedger
from tests.services import RedisServer
from tests.support import free_port

KEY = ("key", "k1", "day:2026-12-02")
TEAM = ("team", "t1", "month:2026-12")


async def test_reserve_settle_and_reload_after_a_flush(redis_server: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_server.url, timeout_s=2))
    try:
        ledger = RedisLedger(conns.client(), conns.pipeline(), LocalLedger())
        limits = ledger.layout([(KEY, 1.0), (TEAM, 0.5)])
        assert await ledger.reserve(limits, 0.3) is None
        assert await ledger.reserve(limits, 0.3) == TEAM  # all or nothing: the key is not charged
        held = redis_server.command("GET", "llmgw:budget:key:k1:day:2026-12-02")
        assert held.split(b"\r\n")[1] == str(int(0.3 * MICRO)).encode()
        ledger.settle(limits, 0.3, 0.1, remote=True)  # sent, not awaited
        await ledger.drain(2.0)
        assert not ledger.unsettled
        redis_server.command("SCRIPT", "FLUSH")  # as after a restart: EVALSHA answers NOSCRIPT
        assert await ledger.reserve(limits, 0.3) is None  # 0.1 + 0.3 fits the team's 0.5
        held = redis_server.command("GET", "llmgw:budget:team:t1:month:2026-12")
        assert held.split(b"\r\n")[1] == str(int(0.4 * MICRO)).encode()
        assert ledger.up
    finally:
        await conns.close()


async def test_an_unreachable_redis_falls_back_to_the_local_ledger_at_once() -> None:
    conns = RedisConnections(RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.05))
    try:
        local = LocalLedger()
        ledger = RedisLedger(conns.client(), conns.pipeline(), local)
        started = time.perf_counter()
        limits = ledger.layout([(KEY, 1.0)])
        assert await ledger.reserve(limits, 0.6) is None
        assert await ledger.reserve(limits, 0.6) == KEY  # the local ledger's 0.6 of 1.0 taken
        assert time.perf_counter() - started < 1.0 and not ledger.up
        assert local.reserved[KEY] == 0.6
    finally:
        await conns.close()
