"""plugins.auth over real sockets: client keys, hashed keys, model permissions, the principal."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from gateway import Outcome, RequestContext, hookimpl
from gateway.app import build_app
from gateway.errors import ConfigError
from gateway.loader import load_data
from plugins import auth
from tests.conftest import MOCK_PROVIDER, RunningGateway, make_config

KEY_A = "sk-team-a-0123456789"
KEY_B = "sk-team-b-9876543210"
HASHED_B = "sha256:" + hashlib.sha256(KEY_B.encode()).hexdigest()
CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}


def keys_config(*keys: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return make_config(auth={"keys": list(keys)}, **sections)


TWO_KEYS = keys_config({"name": "team-a", "key": "${KEY_A}"}, {"name": "team-b", "key": HASHED_B})
ENV = {"KEY_A": KEY_A}


async def error_of(resp: Any) -> dict[str, Any]:
    body = await resp.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]


async def test_missing_key_is_401_with_openai_envelope(gateway, http):
    gw = await gateway(TWO_KEYS, env=ENV)
    async with http.post(gw.v1 + "/chat/completions", json=CHAT) as resp:
        assert resp.status == 401
        error = await error_of(resp)
    assert error["type"] == "authentication_error"
    assert error["code"] == "missing_api_key"


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer sk-wrong"},
    {"x-api-key": "sk-wrong"},
    {"Authorization": f"Bearer {KEY_A}x"},
])
async def test_wrong_key_is_401_and_never_echoed(gateway, http, headers):
    gw = await gateway(TWO_KEYS, env=ENV)
    async with http.post(gw.v1 + "/chat/completions", json=CHAT, headers=headers) as resp:
        assert resp.status == 401
        text = await resp.text()
        error = await error_of(resp)
    assert error["code"] == "invalid_api_key"
    assert "sk-wrong" not in text and KEY_A not in text


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY_A}"},
    {"authorization": f"bearer {KEY_A}"},
    {"x-api-key": KEY_A},
    {"Authorization": f"Bearer {KEY_B}"},  # stored only as its sha256
    {"x-api-key": KEY_B},
])
async def test_bearer_and_x_api_key_with_plain_and_hashed_keys(gateway, http, headers):
    gw = await gateway(TWO_KEYS, env=ENV)
    async with http.post(gw.v1 + "/chat/completions", json=CHAT, headers=headers) as resp:
        assert resp.status == 200
    async with http.get(gw.v1 + "/models", headers=headers) as resp:
        assert resp.status == 200


async def test_models_listing_needs_a_key_too(gateway, http):
    gw = await gateway(TWO_KEYS, env=ENV)
    async with http.get(gw.v1 + "/models") as resp:
        assert resp.status == 401
    async with http.get(gw.v1 + "/models", headers={"x-api-key": "nope"}) as resp:
        assert resp.status == 401


async def test_no_keys_means_auth_is_off(gateway, http):
    gw = await gateway(make_config())
    async with http.post(gw.v1 + "/chat/completions", json=CHAT, headers={"x-api-key": "anything"}) as resp:
        assert resp.status == 200


async def test_config_keeps_only_digests_in_memory(gateway):
    gw = await gateway(TWO_KEYS, env=ENV)
    state = gw.app[auth.AUTH]
    assert [k.name for k in state.keys] == ["team-a", "team-b"]
    assert state.keys[0].digest == hashlib.sha256(KEY_A.encode()).digest()
    assert KEY_A not in repr(state) and KEY_B not in repr(state)


@pytest.mark.parametrize("presented,expected", [(KEY_A, "k0"), (KEY_B, "k1"), ("sk-unknown", None)])
def test_presented_key_is_hashed_once_and_looked_up_by_digest(monkeypatch, presented, expected):
    state = auth.AuthState(tuple(
        auth.KeyEntry(f"k{i}", hashlib.sha256(k.encode()).digest(), ())
        for i, k in enumerate([KEY_A, KEY_B, "sk-third", KEY_A])  # a repeated key: the first wins
    ))
    hashed: list[bytes] = []
    original = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        hashed.append(data)
        return original(data)

    monkeypatch.setattr(auth.hashlib, "sha256", counting)
    found = state.match(presented)
    assert (found.name if found else None) == expected
    assert hashed == [presented.encode()]  # once, whatever the number of keys
    assert len(state.by_digest) == 3


def test_ten_thousand_keys_are_found_by_digest():
    keys = tuple(auth.KeyEntry(f"k{i}", hashlib.sha256(f"sk-{i}".encode()).digest(), ())
                 for i in range(10_000))
    state = auth.AuthState(keys)
    assert state.match("sk-9999").name == "k9999"
    assert state.match("sk-10000") is None


def two_providers(**sections: Any) -> dict[str, Any]:
    second = {**MOCK_PROVIDER, "name": "second", "models": ["other-1"]}
    return make_config(MOCK_PROVIDER, second, **sections)


PERMS = two_providers(
    auth={"keys": [
        {"name": "limited", "key": KEY_A, "models": ["mock/*", "smart"]},
        {"name": "second-only", "key": KEY_B, "models": ["second/*"]},
    ]},
    models=[{"name": "smart", "targets": ["mock/mock-1"]},
            {"name": "fallback", "targets": ["mock/mock-1", "second/other-1"]}],
)


@pytest.mark.parametrize("model", ["mock-1", "mock/mock-1", "mock/anything", "smart"])
async def test_models_matching_the_keys_patterns_are_allowed(gateway, http, model):
    gw = await gateway(PERMS)
    body = {**CHAT, "model": model}
    async with http.post(gw.v1 + "/chat/completions", json=body, headers={"x-api-key": KEY_A}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("model", ["other-1", "second/other-1"])
async def test_model_outside_the_keys_patterns_is_403_naming_it(gateway, http, model):
    gw = await gateway(PERMS)
    body = {**CHAT, "model": model}
    async with http.post(gw.v1 + "/chat/completions", json=body, headers={"x-api-key": KEY_A}) as resp:
        assert resp.status == 403
        error = await error_of(resp)
    assert error["type"] == "permission_error" and error["code"] == "model_not_allowed"
    assert model in error["message"] and error["param"] == "model"


async def test_alias_targets_are_narrowed_to_the_allowed_ones(gateway, http):
    gw = await gateway(PERMS)
    body = {**CHAT, "model": "fallback"}
    async with http.post(gw.v1 + "/chat/completions", json=body, headers={"x-api-key": KEY_B}) as resp:
        assert resp.status == 200
        assert resp.headers["x-gateway-provider"] == "second"
    async with http.post(gw.v1 + "/chat/completions", json={**body, "model": "smart"},
                         headers={"x-api-key": KEY_B}) as resp:
        assert resp.status == 403


class Recorder:
    """A test plugin that sees what later hooks see."""

    def __init__(self) -> None:
        self.principals: list[Any] = []

    @hookimpl
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.principals.append(ctx.principal)


StartWith = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def gateway_with() -> AsyncIterator[StartWith]:
    """Like the ``gateway`` fixture, with extra plugin objects registered before the app is built
    (hook presence is decided when the app is built)."""
    running: list[web.AppRunner] = []

    async def start(config: dict[str, Any], *plugins: object, env: dict[str, str] | None = None) -> RunningGateway:
        loaded = load_data(config, env or {})
        for plugin in plugins:
            loaded.pm.register(plugin)
        app = build_app(loaded)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        running.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return RunningGateway(f"http://127.0.0.1:{runner.addresses[0][1]}", app, runner)

    yield start
    for runner in reversed(running):
        await runner.cleanup()


async def test_principal_name_reaches_other_hooks_but_never_the_key(gateway_with, http):
    recorder = Recorder()
    gw = await gateway_with(TWO_KEYS, recorder, env=ENV)
    for key in (KEY_A, KEY_B):
        async with http.post(gw.v1 + "/chat/completions", json=CHAT, headers={"x-api-key": key}) as resp:
            assert resp.status == 200
    assert [p.name for p in recorder.principals] == ["team-a", "team-b"]
    assert all(KEY_A not in repr(p) and KEY_B not in repr(p) for p in recorder.principals)


async def test_disabled_auth_plugin_is_not_on_the_request_path(gateway, http):
    gw = await gateway(make_config(plugins={"disabled": ["auth"]}))
    pm = gw.gw.pm
    assert pm.is_blocked("auth")
    for hook in (pm.hook.gateway_authenticate, pm.hook.gateway_request_received):
        assert "auth" not in [impl.plugin_name for impl in hook.get_hookimpls()]
    assert auth.AUTH not in gw.app


def test_keys_with_the_auth_plugin_disabled_is_a_config_error_not_an_open_door():
    with pytest.raises(ConfigError) as exc:
        load_data(keys_config({"name": "a", "key": KEY_A}, plugins={"disabled": ["auth"]}), {})
    assert exc.value.problems[0][0] == "auth.keys"


async def test_undecodable_key_bytes_are_a_wrong_key_not_a_crash(gateway):
    gw = await gateway(keys_config({"name": "a", "key": KEY_A}))
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert raw.split(b"\r\n", 1)[0].endswith(b"401 Unauthorized")
