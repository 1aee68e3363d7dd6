"""``serve --workers 2``: whichever worker a poll reaches, /admin/dashboard counts every worker's
requests (each worker's buffers are shared as files; see plugins/dashboard/shared.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.governance.conftest import ADMIN, chat, governance_config
from tests.support import serve_workers

REQUESTS = 40


def fresh() -> aiohttp.ClientSession:
    """A session whose every request opens a new connection, so SO_REUSEPORT picks any worker."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def view(url: str) -> dict[str, Any]:
    async with fresh() as http, http.get(url + "/admin/dashboard", headers=ADMIN) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_every_poll_covers_every_worker(tmp_path: Path) -> None:
    config = governance_config(tmp_path / "gw.db", server={"drain_timeout_s": 5})
    async with serve_workers(config, tmp_path) as url:
        async with fresh() as http:
            async with http.post(url + "/admin/keys", json={"name": "w"}, headers=ADMIN) as resp:
                key = (await resp.json())["key"]
            total = errors = served = 0
            while served < REQUESTS:  # the other worker learns the new key within its poll interval
                for model in ("mock-1", "no-such-model"):  # the second is a 404: an error
                    async with http.post(url + "/v1/chat/completions", json={**chat(), "model": model},
                                         headers={"Authorization": f"Bearer {key}"}) as resp:
                        await resp.read()
                    total, errors = total + 1, errors + (resp.status != 200)
                    served += resp.status == 200
        # A worker sees the others' requests through their snapshots, written every second: wait
        # until ten polls in a row, on fresh connections, agree on everything.
        deadline, agreed = time.monotonic() + 15, 0
        while agreed < 10:
            seen = await view(url)
            counts = (seen["workers"], seen["totals"]["requests"], seen["totals"]["errors"],
                      {p["name"]: p["requests"] for p in seen["providers"]})
            agreed = agreed + 1 if counts == (2, total, errors, {"mock": served}) else 0
            assert time.monotonic() < deadline, f"the workers never added up: {counts}"
            if not agreed:
                await asyncio.sleep(0.1)
