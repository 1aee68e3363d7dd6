"""The admin API's contract: auth, validation that names the field, 404s, and the keys CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from tests.conftest import StartGateway, make_config
from tests.governance.conftest import ADMIN, ADMIN_KEY, admin_call, completion, governance_config


async def test_without_an_admin_section_the_admin_api_is_not_there(gateway: StartGateway, tmp_path: Path,
                                                                    http: aiohttp.ClientSession) -> None:
    gw = await gateway(make_config(pricing={"mock/mock-1": {"input": 1, "output": 1}},
                                   store={"url": f"sqlite:///{tmp_path}/gw.db"}))
    for path in ("/admin/keys", "/admin/teams", "/admin/spend"):
        async with http.get(gw.url + path, headers=ADMIN) as resp:
            assert resp.status == 404
    assert (await completion(http, gw, None))[0] == 200  # and client auth stays off


async def test_admin_needs_an_admin_key_and_never_a_client_key(gateway: StartGateway, tmp_path: Path,
                                                               http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    _, created = await admin_call(http, gw, "POST", "/admin/keys", {"name": "client"})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {created['key']}"}):
        async with http.get(gw.url + "/admin/keys", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 401 and body["error"]["type"] == "authentication_error"


async def test_client_auth_is_on_before_the_first_key_exists(gateway: StartGateway, tmp_path: Path,
                                                             http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    status, body, _ = await completion(http, gw, None)
    assert status == 401 and body["error"]["code"] == "missing_api_key"
    status, body, _ = await completion(http, gw, "sk-gw-not-a-key")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert (await completion(http, gw, ADMIN_KEY))[0] == 401  # an admin key is no client key


async def test_every_bad_input_is_a_400_naming_the_field(gateway: StartGateway, tmp_path: Path,
                                                         http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    cases = [
        ("POST", "/admin/keys", {}, "name"),
        ("POST", "/admin/keys", {"name": "a", "budget_period": "year"}, "budget_period"),
        ("POST", "/admin/keys", {"name": "a", "budget_usd": -1}, "budget_usd"),
        ("POST", "/admin/keys", {"name": "a", "rate_limit": {"requests_per_minute": 0}},
         "rate_limit.requests_per_minute"),
        ("POST", "/admin/keys", {"name": "a", "team": "team_nope"}, "team"),
        ("POST", "/admin/keys", {"name": "a", "expires_at": "soon"}, "expires_at"),
        ("POST", "/admin/keys", {"name": "a", "colour": "red"}, "colour"),
        ("POST", "/admin/teams", {"name": ""}, "name"),
        ("POST", "/admin/teams", {"name": "t", "budget_usd": "lots"}, "budget_usd"),
    ]
    for method, path, body, field in cases:
        status, answer = await admin_call(http, gw, method, path, body)
        assert status == 400, (body, answer)
        assert answer["error"]["param"] == field and field in answer["error"]["message"], answer
    for query, field in (("group_by=colour", "group_by"), ("from=yesterday", "from"), ("to=2026-13-01", "to")):
        async with http.get(f"{gw.url}/admin/spend?{query}", headers=ADMIN) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == field
    async with http.post(gw.url + "/admin/keys", data=b"{not json", headers=ADMIN) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"


async def test_unknown_ids_are_404(gateway: StartGateway, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    for method in ("GET", "PATCH", "DELETE"):
        for path in ("/admin/keys/key_nope", "/admin/teams/team_nope"):
            status, body = await admin_call(http, gw, method, path, {} if method == "PATCH" else None)
            assert status == 404 and body["error"]["param"] == "id", (method, path)


async def test_keys_and_teams_are_created_listed_patched_and_removed(gateway: StartGateway, tmp_path: Path,
                                                                     http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    status, team = await admin_call(http, gw, "POST", "/admin/teams", {"name": "research", "budget_usd": 5,
                                                                       "budget_period": "month"})
    assert status == 201 and team["id"].startswith("team_")
    status, key = await admin_call(http, gw, "POST", "/admin/keys", {
        "name": "notebook", "team": team["id"], "models": ["mock/*"], "budget_usd": 1, "budget_period": "day",
        "expires_at": "2099-01-01T00:00:00Z", "metadata": {"owner": "ana"}, "rate_limit": {"requests_per_minute": 9}})
    assert status == 201 and key["key"].startswith("sk-gw-") and key["key_hint"].endswith(key["key"][-4:])
    _, listed = await admin_call(http, gw, "GET", "/admin/keys")
    assert [k["id"] for k in listed["data"]] == [key["id"]] and "key" not in listed["data"][0]
    assert key["key"] not in json.dumps(listed)
    status, patched = await admin_call(http, gw, "PATCH", f"/admin/keys/{key['id']}", {"budget_usd": 2})
    assert status == 200 and patched["budget_usd"] == 2 and patched["name"] == "notebook"
    _, teams = await admin_call(http, gw, "GET", "/admin/teams")
    assert teams["data"][0]["keys"] == 1
    assert (await completion(http, gw, key["key"]))[0] == 200
    status, gone = await admin_call(http, gw, "DELETE", f"/admin/teams/{team['id']}")
    assert status == 200 and gone["deleted"] is True
    assert (await completion(http, gw, key["key"]))[0] == 401  # a deleted team's keys stop working
    assert (await admin_call(http, gw, "GET", f"/admin/teams/{team['id']}"))[0] == 404


async def test_virtual_key_models_are_enforced(gateway: StartGateway, tmp_path: Path,
                                               http: aiohttp.ClientSession) -> None:
    gw = await gateway(governance_config(tmp_path / "gw.db"))
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "embed-only", "models": ["mock/mock-embed"]})
    status, body, _ = await completion(http, gw, key["key"])
    assert status == 403 and body["error"]["param"] == "model"


async def test_static_keys_keep_working_beside_virtual_ones(gateway: StartGateway, tmp_path: Path,
                                                            http: aiohttp.ClientSession) -> None:
    config = governance_config(tmp_path / "gw.db", auth={"keys": [{"name": "ops", "key": "static-key-123456"}]})
    gw = await gateway(config)
    _, key = await admin_call(http, gw, "POST", "/admin/keys", {"name": "v"})
    assert (await completion(http, gw, "static-key-123456"))[0] == 200
    assert (await completion(http, gw, key["key"]))[0] == 200
    assert (await completion(http, gw, "neither"))[0] == 401
    assert (await completion(http, gw, None))[0] == 401


async def test_the_cli_makes_keys_a_running_gateway_accepts(gateway: StartGateway, tmp_path: Path,
                                                            http: aiohttp.ClientSession) -> None:
    config = governance_config(tmp_path / "gw.db")
    gw = await gateway(config)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "keys", "--config", str(path), *args],
                              capture_output=True, text=True, timeout=60)

    made = await asyncio.to_thread(cli, "create", "--name", "from-cli", "--budget-usd", "3", "--budget-period", "week")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    deadline = time.monotonic() + 5
    while (await completion(http, gw, created["key"]))[0] != 200:
        assert time.monotonic() < deadline, "the gateway never saw the key the CLI made"
        await asyncio.sleep(0.05)
    listed = await asyncio.to_thread(cli, "list")
    assert created["key"] not in listed.stdout and json.loads(listed.stdout)["id"] == created["id"]
    revoked = await asyncio.to_thread(cli, "revoke", created["id"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked"] is True
    assert (await asyncio.to_thread(cli, "revoke", "key_nope")).returncode == 1
