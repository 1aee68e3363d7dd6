"""Canary keys in the config and in requests; every error path the mock provider and a stub vendor
can reach; all log output, response bodies, ``/metrics`` and ``/health/providers`` searched for them.

The stub vendor echoes the key it was sent in every error (a 401 on chat and on the health check's
model listing, a 500, a 400, a broken stream, a non-JSON body), one provider's port is closed and
one model never answers. A test plugin logs the request headers on every request and raises with
the ``Authorization`` header in its message. Logs are captured at DEBUG through ``caplog`` and
through root handlers added before and after the gateway started.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import RequestContext, hookimpl
from gateway.app import build_app
from gateway.keys import GATEWAY
from gateway.loader import load_data
from gateway.plugin_manager import plugin_names
from tests.conftest import MOCK_PROVIDER, make_config
from tests.stub_upstream import StubUpstream, start_stub, stub_provider

VENDOR_KEY = "sk-proj-" + secrets.token_urlsafe(40)
OTHER_VENDOR_KEY = "sk-ant-api03-" + secrets.token_urlsafe(64)
CLIENT_KEY = "gw-" + secrets.token_urlsafe(24)
WRONG_CLIENT_KEY = "gw-" + secrets.token_urlsafe(24)  # presented, never configured
CANARIES = (VENDOR_KEY, OTHER_VENDOR_KEY, CLIENT_KEY, WRONG_CLIENT_KEY)
USER = [{"role": "user", "content": "hello"}]

spy_log = logging.getLogger("tests.header_spy")


class HeaderSpy:
    """A careless third-party plugin: logs every request's headers, and can blow up with them."""

    @hookimpl
    def gateway_authenticate(self, ctx: RequestContext) -> None:
        spy_log.debug("request headers: %r", ctx.request.headers)
        spy_log.info("as a dict: %s", dict(ctx.request.headers))

    @hookimpl
    def gateway_request_received(self, ctx: RequestContext) -> None:
        if ctx.body.get("user") == "explode":
            raise RuntimeError(f"cannot handle {ctx.request.headers.get('Authorization')}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leak_config(stub: StubUpstream, log_format: str) -> dict[str, Any]:
    checked = {"health_check": {"enabled": True, "interval_s": 3600}}
    vend = stub_provider("vend", stub.url, VENDOR_KEY, [
        "status-401", "status-500", "status-400", "bad-json", "hang", "midstream",
    ], **checked)
    other = stub_provider("other", stub.url, OTHER_VENDOR_KEY, ["status-403"], **checked)
    dead = stub_provider("dead", f"http://127.0.0.1:{closed_port()}/v1", VENDOR_KEY, ["dead-1"], **checked)
    return make_config(
        MOCK_PROVIDER, vend, other, dead,
        auth={"keys": [{"name": "team", "key": CLIENT_KEY}]},
        server={"max_body_bytes": 4096},
        logging={"format": log_format, "level": "debug"},
        access_log={"enabled": True},
    )


@pytest.fixture
async def stub() -> AsyncIterator[StubUpstream]:
    upstream = await start_stub()
    yield upstream
    await upstream.close()


class RootCapture:
    """Root-logger handlers printing to buffers, added at chosen moments; removed at teardown."""

    def __init__(self) -> None:
        self.handlers: list[logging.StreamHandler[io.StringIO]] = []

    def add(self) -> None:
        self.handlers.append(logging.StreamHandler(io.StringIO()))
        logging.getLogger().addHandler(self.handlers[-1])

    def texts(self) -> list[str]:
        return [h.stream.getvalue() for h in self.handlers]


@pytest.fixture
def root_capture() -> Iterator[RootCapture]:
    capture = RootCapture()
    capture.add()  # exists before the gateway starts
    yield capture
    for handler in capture.handlers:
        logging.getLogger().removeHandler(handler)


async def start_gateway(config: dict[str, Any]) -> web.AppRunner:
    loaded = load_data(config, {})
    loaded.pm.register(HeaderSpy(), name="header-spy")
    runner = web.AppRunner(build_app(loaded), handler_cancellation=True, access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def call(http: aiohttp.ClientSession, url: str, bodies: list[str], **kw: Any) -> int:
    async with http.post(url, **kw) as resp:
        bodies.append(await resp.text())
        bodies.append(str(dict(resp.headers)))
        return resp.status


async def drive_error_paths(http: aiohttp.ClientSession, base: str, bodies: list[str], auth_on: bool) -> None:
    chat = base + "/v1/chat/completions"
    good = {"Authorization": f"Bearer {CLIENT_KEY}"}
    expected = {"status-401": 502, "status-500": 502, "status-400": 400, "status-403": 502, "bad-json": 502,
                "hang": 504, "dead-1": 502, VENDOR_KEY: 404}
    for model, status in expected.items():
        assert await call(http, chat, bodies, json={"model": model, "messages": USER}, headers=good) == status
    stream = {"model": "midstream", "messages": USER, "stream": True}
    assert await call(http, chat, bodies, json=stream, headers=good) == 200
    assert "stream broke for key" in bodies[-2]
    explode = {"model": "mock-1", "messages": USER, "user": "explode"}
    assert await call(http, chat, bodies, json=explode, headers=good) == 500
    bad_json = b'{"model": "' + VENDOR_KEY.encode() + b'", "messages": ['
    assert await call(http, chat, bodies, data=bad_json, headers=good) == 400
    huge = {"model": "mock-1", "messages": [{"role": "user", "content": VENDOR_KEY * 200}]}
    assert await call(http, chat, bodies, json=huge, headers=good) == 413
    wrong = {"model": "mock-1", "messages": USER}
    for headers in ({"Authorization": f"Bearer {WRONG_CLIENT_KEY}"}, {"x-api-key": WRONG_CLIENT_KEY}):
        assert await call(http, chat, bodies, json=wrong, headers=headers) == (401 if auth_on else 200)
    async with http.get(base + "/v1/models", headers={"Authorization": f"Bearer {WRONG_CLIENT_KEY}"}) as resp:
        bodies.append(await resp.text())
    await drive_dialect_paths(http, base, bodies, expected, auth_on)


async def drive_dialect_paths(
    http: aiohttp.ClientSession, base: str, bodies: list[str], expected: dict[str, int], auth_on: bool
) -> None:
    """The same failures through /v1/messages (translated to the stub's chat API) and /v1/responses."""
    messages = base + "/v1/messages"
    good = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    # The paths where a key could be echoed (the stub's 401 and 500 bodies carry it, a model name
    # may be one); the rest is the chat loop's. Fewer requests: fewer stub timeouts on a busy machine.
    for model in ("status-401", "status-500", "bad-json", VENDOR_KEY):
        status = expected[model]
        body = {"model": model, "max_tokens": 5, "messages": USER}
        assert await call(http, messages, bodies, json=body, headers=good) == status
    stream = {"model": "midstream", "max_tokens": 5, "messages": USER, "stream": True}
    assert await call(http, messages, bodies, json=stream, headers=good) == 200
    assert "event: error" in bodies[-2]
    wrong = {"model": "mock-1", "max_tokens": 5, "messages": USER}
    assert await call(http, messages, bodies, json=wrong, headers={"x-api-key": WRONG_CLIENT_KEY}) == (
        401 if auth_on else 200)
    responses = {"model": "status-401", "input": "hi"}  # the stub has no /responses: relayed, 404
    await call(http, base + "/v1/responses", bodies, json=responses, headers={"Authorization": f"Bearer {CLIENT_KEY}"})


async def wait_for_health_checks(http: aiohttp.ClientSession, base: str) -> str:
    for _ in range(200):
        async with http.get(base + "/health/providers") as resp:
            text = await resp.text()
            providers = (await resp.json())["providers"]
        if all(p["last_checked"] for p in providers if p["name"] != "mock"):
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"health checks did not run: {text}")


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_canary_key_appears_in_logs_bodies_metrics_or_health(stub, http, caplog, root_capture, log_format):
    caplog.set_level(logging.DEBUG)
    runner = await start_gateway(leak_config(stub, log_format))
    root_capture.add()  # added after the gateway started, as a late dictConfig or a test harness would
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    bodies: list[str] = []
    try:
        auth_on = "auth" in plugin_names(runner.app[GATEWAY].pm)  # the auth plugin may be left out
        health = await wait_for_health_checks(http, base)
        await drive_error_paths(http, base, bodies, auth_on)
        async with http.get(base + "/metrics") as resp:
            metrics = await resp.text()
        health = await wait_for_health_checks(http, base)
    finally:
        await runner.cleanup()
    logs = [caplog.text, *root_capture.texts()]
    for record in caplog.records:
        logs += [record.getMessage(), record.exc_text or "", str(record.__dict__.get("fields", ""))]
    channels = {"logs": "\n".join(logs), "responses": "\n".join(bodies), "/metrics": metrics, "/health": health}
    leaks = [(name, canary[:10] + "...") for name, text in channels.items() for canary in CANARIES if canary in text]
    assert not leaks
    everything = "\n".join(channels.values())
    # The paths were really taken: the masked forms are there.
    assert f"sk-proj-\u2026{VENDOR_KEY[-4:]}" in everything
    assert "sk-ant-[redacted]" in health  # client-visible text keeps no tail of the gateway's key
    assert "cannot handle Bearer \u2026" in caplog.text and "Traceback" in caplog.text
    assert "llm_gateway.access" in caplog.text
    assert all(stub.keys_seen.count(key) for key in (VENDOR_KEY, OTHER_VENDOR_KEY))
