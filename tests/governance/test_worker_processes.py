"""Real worker processes (`serve --workers 2`, one SQLite file): a key made through one worker
works on all, and a revocation reaches every worker within a second."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from tests.governance.conftest import ADMIN, chat, governance_config
from tests.support import serve_workers


async def fresh(url: str, key: str) -> int:
    """One request on a new connection, so SO_REUSEPORT may hand it to either worker."""
    async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
                http.post(url + "/v1/chat/completions", json=chat(),
                          headers={"Authorization": f"Bearer {key}"}) as resp):
        await resp.read()
        return resp.status


async def test_keys_reach_every_worker_and_revocation_within_a_second(tmp_path: Path) -> None:
    config = governance_config(tmp_path / "gw.db", server={"drain_timeout_s": 5})
    async with serve_workers(config, tmp_path) as url:  # stopped with SIGTERM, must exit 0
        async with (aiohttp.ClientSession() as http,
                    http.post(url + "/admin/keys", json={"name": "w"}, headers=ADMIN) as resp):
            assert resp.status == 201
            key = await resp.json()
        deadline = time.monotonic() + 5
        ok = 0
        while ok < 20:  # 20 in a row on fresh connections: both workers know the key
            ok = ok + 1 if await fresh(url, key["key"]) == 200 else 0
            assert time.monotonic() < deadline, "a worker never learned the new key"
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
                    http.delete(f"{url}/admin/keys/{key['id']}", headers=ADMIN) as resp):
            assert resp.status == 200
        revoked_at = time.monotonic()
        refused, last_served = 0, revoked_at
        while refused < 20:  # 20 refusals in a row: both workers refuse it
            status = await fresh(url, key["key"])
            if status == 200:
                refused, last_served = 0, time.monotonic()
            else:
                assert status == 401
                refused += 1
            assert time.monotonic() - revoked_at < 5.0
        assert last_served - revoked_at < 1.0, "a worker served the revoked key more than a second later"
