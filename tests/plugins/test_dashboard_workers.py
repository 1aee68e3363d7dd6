"""``serve --workers 2``: whichever worker a poll reaches, /admin/dashboard counts every worker's
requests (each worker's buffers are shared as files; see plugins/dashboard/shared.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.governance.conftest import ADMIN, chat, governance_config
from tests.support import free_port, wait_healthy

REQUESTS = 40


def fresh() -> aiohttp.ClientSession:
    """A session whose every request opens a new connection, so SO_REUSEPORT picks any worker."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def view(url: str) -> dict[str, Any]:
    async with fresh() as http, http.get(url + "/admin/dashboard", headers=ADMIN) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_every_poll_covers_every_worker(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(governance_config(tmp_path / "gw.db", server={"port": port, "drain_timeout_s": 5})))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path), "--workers", "2",
        stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
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
        deadline = time.monotonic() + 10
        while (await view(url))["totals"]["requests"] < total:  # snapshots are written each second
            assert time.monotonic() < deadline, "the workers' counts never added up"
            await asyncio.sleep(0.2)
        for _ in range(10):  # whichever worker answers, it answers for both
            seen = await view(url)
            assert seen["workers"] == 2
            assert seen["totals"]["requests"] == total and seen["totals"]["errors"] == errors
            assert {p["name"]: p["requests"] for p in seen["providers"]} == {"mock": served}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
