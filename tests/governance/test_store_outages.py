"""The store goes away mid-run: inference keeps being served on the in-memory state, spend waits
in the buffer, and once the store is back everything written catches up, without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import aiohttp

from plugins.governance import GOVERNANCE
from tests.conftest import RunningGateway, StartGateway
from tests.governance.conftest import admin_call, completion, governance_config
from tests.postgres_service import PostgresServer

ROUNDS = 20


async def served_during(http: aiohttp.ClientSession, gw: RunningGateway, key: str, n: int) -> list[int]:
    return [(await completion(http, gw, key))[0] for _ in range(n)]


async def wait_store_state(gw: RunningGateway, healthy: bool) -> None:
    writer = gw.app[GOVERNANCE].writer
    deadline = time.monotonic() + 20
    while writer.healthy != healthy:
        assert time.monotonic() < deadline, f"the spend writer never became healthy={healthy}"
        await asyncio.sleep(0.05)


async def caught_up(http: aiohttp.ClientSession, gw: RunningGateway, requests: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        status, spend = await admin_call(http, gw, "GET", "/admin/spend?group_by=key")
        if status == 200 and spend["data"] and spend["data"][0]["requests"] == requests:
            return
        assert time.monotonic() < deadline, f"spend never caught up: {status} {spend}"
        await asyncio.sleep(0.1)


class FileLock:
    """Another process's write lock on the SQLite file: our writes time out (the file is not
    writable for us) while readers go on, as in WAL mode."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.held = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.held.set()
            self.release.wait(60)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def __enter__(self) -> FileLock:
        self.thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


async def test_sqlite_unwritable_mid_run_fails_no_request_and_spend_catches_up(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    db = tmp_path / "gw.db"
    gw = await gateway(governance_config(db))
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "k", "budget_usd": 100})
    statuses = await served_during(http, gw, key["key"], ROUNDS)
    with FileLock(db):
        await wait_store_state(gw, healthy=False)
        statuses += await served_during(http, gw, key["key"], ROUNDS)
        status, body = await admin_call(http, gw, "POST", "/admin/keys", {"name": "during"})
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        assert gw.app[GOVERNANCE].writer.waiting >= ROUNDS  # spend waits in memory
    statuses += await served_during(http, gw, key["key"], ROUNDS)
    assert statuses == [200] * (3 * ROUNDS)
    await wait_store_state(gw, healthy=True)
    await caught_up(http, gw, 3 * ROUNDS)


async def test_postgres_stopped_mid_run_fails_no_request_and_spend_catches_up(
        gateway: StartGateway, http: aiohttp.ClientSession, postgres_private: PostgresServer) -> None:
    gw = await gateway(governance_config(postgres_private.url))
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "k", "budget_usd": 100})
    statuses = await served_during(http, gw, key["key"], ROUNDS)
    await asyncio.to_thread(postgres_private.stop)
    await wait_store_state(gw, healthy=False)
    statuses += await served_during(http, gw, key["key"], ROUNDS)
    status, _ = await admin_call(http, gw, "POST", "/admin/keys", {"name": "during"})
    assert status == 503
    await asyncio.to_thread(postgres_private.start)
    statuses += await served_during(http, gw, key["key"], ROUNDS)
    assert statuses == [200] * (3 * ROUNDS)
    await wait_store_state(gw, healthy=True)
    await caught_up(http, gw, 3 * ROUNDS)
    # And key changes flow again: a key made now works at once.
    status, later = await admin_call(http, gw, "POST", "/admin/keys", {"name": "after"})
    assert status == 201 and (await completion(http, gw, later["key"]))[0] == 200


async def test_the_whole_flow_on_postgres(gateway: StartGateway, http: aiohttp.ClientSession,
                                          postgres_url: str) -> None:
    first = await gateway(governance_config(postgres_url, store={"poll_interval_s": 0.5}))
    second = await gateway(governance_config(postgres_url, store={"poll_interval_s": 0.5}))
    _, key = await admin_call(http, first, "POST", "/admin/keys", {"name": "pg", "budget_usd": 0.05})
    other = second.app[GOVERNANCE]
    while key["id"] not in other.index.keys:
        await asyncio.wait_for(other.polled.wait(), 5)
    statuses = [(await completion(http, first, key["key"]))[0] for _ in range(5)]
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
    await caught_up(http, second, statuses.count(200))  # the other gateway reads the same rollups
    assert (await admin_call(http, second, "DELETE", f"/admin/keys/{key['id']}"))[0] == 200
    revoked_at = time.monotonic()
    while (await completion(http, first, key["key"]))[0] != 401:
        assert time.monotonic() - revoked_at < 1.0, "the revocation took more than a second to arrive"
        await asyncio.sleep(0.02)
