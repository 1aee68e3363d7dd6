"""When the attempt that serves a request is ended (circuit breaker, health, the
``gateway_upstream_attempt_done`` hooks): after the client has its first bytes, yet before any
plugin code that may read the attempt's outcome, and never after a failure that followed it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway import hookimpl
from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.support import chat_body, openai_provider, read_events


class Recorder:
    """Notes, at each hook, what the client had been sent so far."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @hookimpl
    def gateway_upstream_attempt_done(self, ctx, attempt, error) -> None:
        self.seen.append(("attempt_done", ctx.request.writer.output_size))

    @hookimpl
    def gateway_request_finished(self, ctx, outcome) -> None:
        self.seen.append(("request_finished", outcome.status))


class SeesResponses(Recorder):
    @hookimpl
    def gateway_response(self, ctx, response) -> None:
        self.seen.append(("response", ctx.request.writer.output_size))


class SeesErrors(Recorder):
    @hookimpl
    def gateway_error(self, ctx, error) -> None:
        self.seen.append(("error", error.type))


async def with_plugin(gateway, plugin: Recorder, config: dict[str, Any] | None = None):
    gw = await gateway(config)
    gw.gw.pm.register(plugin)
    gw.gw.refresh_hooks()
    return gw


@pytest.mark.parametrize("stream", [True, False])
async def test_the_serving_attempt_ends_after_the_client_has_its_first_bytes(gateway, emulator, http, stream):
    emu = await emulator("openai")
    rec = Recorder()
    gw = await with_plugin(gateway, rec, make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=stream)) as resp:
        assert resp.status == 200
        await resp.read()
    (hook, sent), finished = rec.seen
    assert hook == "attempt_done" and sent > 0  # the response head and first bytes were out
    assert finished == ("request_finished", 200)


async def test_response_hooks_still_see_the_attempt_ended(gateway, emulator, http):
    emu = await emulator("openai")
    rec = SeesResponses()
    gw = await with_plugin(gateway, rec, make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 200
    assert [hook for hook, _ in rec.seen] == ["attempt_done", "response", "request_finished"]
    assert rec.seen[0][1] == 0  # a response hook may still change the answer: nothing was sent


async def test_a_failed_attempt_ends_before_the_retry(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.status(500, "down"))
    rec = Recorder()
    retry = {"attempts": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.01}
    gw = await with_plugin(gateway, rec, make_config(openai_provider(emu.url, retry=retry)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body(stream=False)) as resp:
        assert resp.status == 200
    assert [hook for hook, _ in rec.seen] == ["attempt_done", "attempt_done", "request_finished"]
    assert rec.seen[0][1] == 0 < rec.seen[1][1]


async def test_a_stream_that_breaks_after_starting_ends_its_attempt_before_the_error_hooks(
    gateway, emulator, http
):
    """The attempt succeeded (first chunk), then the stream broke: the success is recorded before
    the failure, so error hooks (the tracing plugin marks the serving attempt's span) and the
    circuit breaker see them in the order they happened."""
    emu = await emulator("openai", chunk_delay=0.01)
    emu.state.script(Fault.drop_mid_stream(after=2))
    rec = SeesErrors()
    gw = await with_plugin(gateway, rec, make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat_body()) as resp:
        assert resp.status == 200
        events = await read_events(resp)
    assert "error" in orjson.loads(events[-1])
    assert [hook for hook, _ in rec.seen] == ["attempt_done", "error", "request_finished"]
    assert rec.seen[0][1] > 0  # the attempt ended after its first chunk was sent
