"""Governance over a configuration reload (docs/reload.md): unchanged settings carry the state over,
changed pricing builds a new one; either way the admin API answers, keys authenticate, /metrics has
one cost family whose count goes on, and the retired state is closed (ResourceWarnings are errors)."""

from __future__ import annotations

import gc
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plugins.governance import ACCOUNTING, GOVERNANCE
from tests.conftest import RunningGateway
from tests.e2e.test_reload import Reloadable, reloadable  # noqa: F401 - the reloadable fixture
from tests.e2e.test_reload_cli import Server
from tests.governance.conftest import PRICING, admin_call, completion, governance_config

COST_SERIES = ("llm_gateway_cost_usd_total", (("model", "mock-1"), ("provider", "mock")))


async def cost_families(http: aiohttp.ClientSession, url: str) -> tuple[list[str], float]:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200
        families = list(text_string_to_metric_families(await resp.text()))
    names = [f.name for f in families]
    costs = [s.value for f in families for s in f.samples
             if (s.name, tuple(sorted(s.labels.items()))) == COST_SERIES]
    return names, sum(costs)


async def test_the_admin_api_keys_and_cost_survive_reloads(
        reloadable: Reloadable, tmp_path: Path, http: aiohttp.ClientSession) -> None:  # noqa: F811
    config = governance_config(tmp_path / "gw.db")
    gw = await reloadable.start(config)
    live = reloadable.live
    status, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "kept"})
    assert status == 201
    assert (await completion(http, gw, key["key"]))[0] == 200
    first = live.current.app[GOVERNANCE]

    assert await reloadable.reload(config)  # unchanged: the very same governance serves on
    await live.settled()
    assert live.current.app[GOVERNANCE] is first and first.store_open
    assert (await completion(http, gw, key["key"]))[0] == 200
    status, listed = await admin_call(http, gw, "GET", "/admin/keys")
    assert status == 200 and [k["id"] for k in listed["data"]] == [key["id"]]
    names, cost_before = await cost_families(http, gw.url)
    assert names.count("llm_gateway_cost_usd") == 1 and cost_before > 0

    dearer = {"mock/mock-1": {k: v * 10 for k, v in PRICING["mock/mock-1"].items()}}
    assert await reloadable.reload({**config, "pricing": dearer})  # changed: a new governance
    await live.settled()  # the old generation had nothing in flight: retired, its store closed
    second = live.current.app[GOVERNANCE]
    assert second is not first and not first.store_open and second.store_open
    assert all(task.done() for task in first._tasks)  # its change poll and spend writer stopped
    assert live.current.app[ACCOUNTING].gov is second
    status, body, _ = await completion(http, gw, key["key"])  # the new index has the key from the store
    assert status == 200
    status, made = await admin_call(http, gw, "POST", "/admin/keys", {"name": "after"})  # writes still work
    assert status == 201 and (await completion(http, gw, made["key"]))[0] == 200
    status, listed = await admin_call(http, gw, "GET", "/admin/keys")
    assert status == 200 and {k["id"] for k in listed["data"]} == {key["id"], made["id"]}
    names, cost_after = await cost_families(http, gw.url)
    assert names.count("llm_gateway_cost_usd") == 1  # one family, never a second collector
    assert names.count("llm_gateway_spend_records_written") == 1
    usage = body["usage"]
    ten_times = (usage["prompt_tokens"] * 10_000 + usage["completion_tokens"] * 20_000) / 1e6
    # the counter went on from where it was (same prices for `made`, whose body matches `key`'s)
    assert cost_after == pytest.approx(cost_before + 2 * ten_times)

    assert await reloadable.reload({**config, "pricing": dearer})  # unchanged again: carried over
    await live.settled()
    assert live.current.app[GOVERNANCE] is second
    status, _ = await admin_call(http, gw, "GET", f"/admin/keys/{key['id']}")
    assert status == 200
    await reloadable.running.runner.cleanup()  # type: ignore[union-attr]
    reloadable.running = None
    assert not second.store_open and all(task.done() for task in second._tasks)
    gc.collect()  # an unclosed connection or session would warn here, and warnings are errors


async def test_sighup_to_a_served_gateway_keeps_governance_working(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through `llm-gateway serve` and SIGHUP, with every ResourceWarning shown on stderr."""
    monkeypatch.setenv("PYTHONWARNINGS", "always::ResourceWarning")
    config = governance_config(tmp_path / "gw.db")
    server = Server(tmp_path, config)
    try:
        await server.start()
        async with aiohttp.ClientSession() as http:
            live = RunningGateway(server.url, None, None)  # type: ignore[arg-type]
            status, key = await admin_call(http, live, "POST", "/admin/keys", {"name": "kept"})
            assert status == 201 and (await completion(http, live, key["key"]))[0] == 200
            dearer = {"mock/mock-1": {k: v * 10 for k, v in PRICING["mock/mock-1"].items()}}
            for n, pricing in enumerate((config["pricing"], dearer), start=1):  # unchanged, then changed
                server.write({**config, "pricing": pricing})
                assert server.proc is not None
                os.kill(server.proc.pid, signal.SIGHUP)
                await server.wait_for_lines("configuration reloaded", n)
                status, listed = await admin_call(http, live, "GET", "/admin/keys")
                assert status == 200 and [k["id"] for k in listed["data"]] == [key["id"]]
                assert (await completion(http, live, key["key"]))[0] == 200
                names, cost = await cost_families(http, server.url)
                assert names.count("llm_gateway_cost_usd") == 1 and cost > 0
    finally:
        await server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    text = "".join(server.lines)
    assert "ResourceWarning" not in text and "Traceback" not in text, text
