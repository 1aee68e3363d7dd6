"""Virtual and admin keys never leave the create response: not in logs, store rows, error
bodies, /metrics, spans or the admin listings (a sibling of tests/e2e/test_no_secret_leaks.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from plugins.tracing import TRACING
from tests.conftest import StartGateway
from tests.governance.conftest import ADMIN_KEY, admin_call, chat, completion, flushed, governance_config
from tests.telemetry.test_traces import Receiver, receiver  # noqa: F401 - the receiver fixture


async def test_keys_appear_only_in_the_create_response(
        gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        receiver: tuple[Receiver, str]) -> None:  # noqa: F811
    rec, endpoint = receiver
    db = tmp_path / "gw.db"
    gw = await gateway(governance_config(db, access_log={"enabled": True},
                                         telemetry={"endpoint": endpoint, "schedule_delay_ms": 50}))
    caplog.set_level(logging.DEBUG)
    _, team = await admin_call(http, gw, "POST", "/admin/teams", {"name": "t", "budget_usd": 0.02})
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "canary", "team": team["id"]})
    secret = key.pop("key")
    seen: list[str] = []
    for body in (chat(), chat(stream=True), chat(), chat(), {"model": "mock-1"}, {"model": "nope", "messages": []}):
        _, answer, _ = await completion(http, gw, secret, body)
        seen.append(str(answer))
    assert "budget_exceeded" in "".join(seen)  # the refusal path was taken too
    async with http.post(gw.v1 + "/chat/completions", json=chat(), headers={"Authorization": f"Bearer {secret}x"}) as r:
        seen.append(await r.text())
    async with http.get(gw.url + "/admin/keys", headers={"Authorization": f"Bearer {secret}"}) as r:
        seen.append(await r.text())
    for path in ("/admin/keys", f"/admin/keys/{key['id']}", "/admin/teams", "/admin/spend?group_by=key"):
        seen.append(str(await admin_call(http, gw, "GET", path)))
    seen.append(str(await admin_call(http, gw, "DELETE", f"/admin/keys/{key['id']}")))
    seen.append(str(await completion(http, gw, secret)))
    await flushed(gw)
    async with http.get(gw.url + "/metrics") as r:
        seen.append(await r.text())
    await asyncio.to_thread(gw.app[TRACING].force_flush)
    seen += [str(span) for _, span in rec.spans]
    seen += [r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records]
    with sqlite3.connect(db) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            seen += [str(row) for row in conn.execute(f"SELECT * FROM {table}").fetchall()]
    conn.close()
    everything = "\n".join(seen)
    assert key["id"] in everything  # the search is over real material
    for canary in (secret, secret[6:], ADMIN_KEY):
        assert canary not in everything
    assert db.read_bytes().find(secret.encode()) == -1
