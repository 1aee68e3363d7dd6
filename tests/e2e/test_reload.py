"""Configuration reload: a new config for new requests, the old one for requests in flight; an
invalid file changes nothing; removed or changed providers close once their last request ended."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from gateway.app import build_app
from gateway.connections import make_runner
from gateway.keys import RELOADER
from gateway.loader import load
from gateway.reload import Reloader
from tests.conftest import MOCK_PROVIDER, RunningGateway, make_config
from tests.support import chat_body, openai_provider, read_events

ReloadableGateway = Callable[[dict[str, Any]], Awaitable[RunningGateway]]


class Reloadable:
    """A gateway started from a file, and the file, to rewrite and reload."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.running: RunningGateway | None = None

    async def start(self, config: dict[str, Any]) -> RunningGateway:
        self.write(config)
        app = build_app(load(self.path, env={}))
        runner = await make_runner(app, access_log=None, shutdown_timeout=5)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.running = RunningGateway(f"http://127.0.0.1:{runner.addresses[0][1]}", app, runner)
        return self.running

    def write(self, config: dict[str, Any] | str) -> None:
        self.path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))

    @property
    def live(self) -> Reloader:
        assert self.running is not None
        return self.running.app[RELOADER]

    async def reload(self, config: dict[str, Any] | str) -> bool:
        self.write(config)
        return await self.live.reload()


@pytest.fixture
async def reloadable(tmp_path: Path) -> AsyncIterator[Reloadable]:
    gw = Reloadable(tmp_path / "gateway.yaml")
    yield gw
    if gw.running is not None:
        await gw.running.runner.cleanup()


async def post(http, gw: RunningGateway, body: dict[str, Any], **kw: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(gw.v1 + "/chat/completions", json=body, **kw) as resp:
        return resp.status, await resp.json()


async def test_reload_in_the_middle_of_50_streams_breaks_none(reloadable, emulator, http):
    emu = await emulator("openai")
    emu.state.release = asyncio.Event()  # every stream holds after its first event
    config = make_config(openai_provider(emu.url))
    gw = await reloadable.start(config)
    old = gw.gw.registry["oai"]
    started = [asyncio.Event() for _ in range(50)]

    async def one(flag: asyncio.Event) -> list[bytes]:
        async with http.post(gw.v1 + "/chat/completions", json=chat_body()) as resp:
            assert resp.status == 200
            events: list[bytes] = []
            buf = b""
            async for data in resp.content.iter_any():
                buf += data
                flag.set()
                events = [line[6:] for line in buf.split(b"\n\n") if line.startswith(b"data: ")]
            return events

    streams = [asyncio.create_task(one(flag)) for flag in started]
    await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in started)), 30)
    # The provider changes (a new timeout): new requests get a new session, these keep theirs.
    changed = make_config(openai_provider(emu.url, timeouts={"idle_s": 30}),
                          models=[{"name": "smart", "targets": ["oai/gpt-4o-mini"]}])
    assert await reloadable.reload(changed)
    assert reloadable.live.current.registry["oai"] is not old
    assert old.transport._session is not None  # still serving the 50 streams
    status, _ = await post(http, gw, chat_body(stream=False, model="smart"))
    assert status == 200
    emu.state.release.set()
    results = await asyncio.wait_for(asyncio.gather(*streams), 30)
    assert all(events and events[-1] == b"[DONE]" for events in results)
    assert len({len(events) for events in results}) == 1  # every stream whole, none cut short
    await reloadable.live.settled()
    assert old.transport._session is None  # closed after its last stream
    assert len(reloadable.live.live) == 1


async def test_an_invalid_reload_changes_nothing(reloadable, http, caplog):
    gw = await reloadable.start(make_config(models=[{"name": "smart", "targets": ["mock/mock-1"]}]))
    before = reloadable.live.current
    broken = make_config({**MOCK_PROVIDER, "type": "no-such-vendor"})
    with caplog.at_level(logging.ERROR, logger="llm_gateway.reload"):
        assert not await reloadable.reload(broken)
        assert not await reloadable.reload("providers: [unclosed")
    assert "providers[0].type" in caplog.text and "nothing changed" in caplog.text
    assert reloadable.live.current is before
    status, _ = await post(http, gw, chat_body(stream=False, model="smart"))
    assert status == 200
    async with http.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    assert 'llm_gateway_config_reloads_total{result="failed"} 2.0' in text
    assert 'llm_gateway_config_reloads_total{result="ok"} 0.0' in text


async def test_a_provider_removed_while_its_stream_runs(reloadable, emulator, http):
    emu = await emulator("openai")
    emu.state.release = asyncio.Event()
    gw = await reloadable.start(make_config(openai_provider(emu.url), MOCK_PROVIDER))
    oai = gw.gw.registry["oai"]
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(model="oai/gpt-4o-mini")) as resp:
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ")
        assert await reloadable.reload(make_config(MOCK_PROVIDER))
        status, body = await post(http, gw, chat_body(stream=False, model="oai/gpt-4o-mini"))
        assert status == 404 and body["error"]["code"] == "model_not_found"
        assert oai.transport._session is not None
        emu.state.release.set()
        events = await read_events(resp)
    assert events[-1] == b"[DONE]" and "choices" in orjson.loads(events[0])
    await reloadable.live.settled()
    assert oai.transport._session is None
    status, _ = await post(http, gw, chat_body(stream=False, model="mock-1"))
    assert status == 200


async def test_limits_and_cache_survive_a_reload_that_leaves_them_alone(reloadable, http):
    sections = {"rate_limit": {"requests_per_minute": 3}, "cache": {"enabled": True}}
    gw = await reloadable.start(make_config(**sections))
    body = chat_body(stream=False, model="mock-1")
    async with http.post(gw.v1 + "/chat/completions", json=body) as resp:
        assert resp.status == 200 and resp.headers["x-cache"] == "MISS"
    assert await reloadable.reload(make_config(**sections, models=[{"name": "smart", "targets": ["mock/mock-1"]}]))
    async with http.post(gw.v1 + "/chat/completions", json=body) as resp:
        assert resp.status == 200 and resp.headers["x-cache"] == "HIT"  # the cache came along
    status, _ = await post(http, gw, chat_body(stream=False, model="smart"))
    assert status == 200
    status, _ = await post(http, gw, chat_body(stream=False, model="smart"))
    assert status == 429  # three requests in this minute, over both configurations
    assert await reloadable.reload(make_config(rate_limit={"requests_per_minute": 10}, cache={"enabled": True}))
    status, _ = await post(http, gw, chat_body(stream=False, model="mock-1", user="x"))
    assert status == 200  # a changed limit starts afresh


async def test_keys_and_plugin_settings_take_effect(reloadable, http):
    gw = await reloadable.start(make_config(auth={"keys": [{"name": "a", "key": "sk-old-key-0123456789"}]}))
    old, new = {"Authorization": "Bearer sk-old-key-0123456789"}, {"Authorization": "Bearer sk-new-key-9876543210"}
    assert (await post(http, gw, chat_body(stream=False, model="mock-1"), headers=old))[0] == 200
    assert await reloadable.reload(make_config(auth={"keys": [{"name": "b", "key": "sk-new-key-9876543210"}]},
                                               cache={"enabled": True}))
    assert (await post(http, gw, chat_body(stream=False, model="mock-1"), headers=old))[0] == 401
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False, model="mock-1"),
                         headers=new) as resp:
        assert resp.status == 200 and resp.headers["x-cache"] == "MISS"  # the cache is on now
    assert await reloadable.reload(make_config())  # auth off again
    assert (await post(http, gw, chat_body(stream=False, model="mock-1")))[0] == 200
