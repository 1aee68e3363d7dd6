"""End-to-end SSE relaying against a real OpenAI emulator on a loopback port."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest

from gateway.connections import TCP_USER_TIMEOUT
from tests.conftest import make_config
from tests.emulators.base import Fault
from tests.support import chat_body as chat
from tests.support import openai_provider, read_events


async def test_first_chunk_arrives_before_upstream_finishes(gateway, emulator, http):
    """The emulator pauses after its first event until released: the client must already hold
    that first chunk, so nothing waited for the whole upstream response."""
    emu = await emulator("openai", release=asyncio.Event())
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert b'"role":"assistant"' in first or b'"content"' in first
        assert emu.state.streams_closed == 0  # upstream still mid-stream
        emu.state.release.set()
        rest = await read_events(resp)
    assert rest[-1] == b"[DONE]"


async def test_chunks_200ms_apart_reach_the_client_as_they_are_sent(gateway, emulator, http):
    emu = await emulator("openai", chunk_delay=0.2)
    gw = await gateway(make_config(openai_provider(emu.url)))
    arrivals: list[float] = []
    start = time.perf_counter()
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        buf = b""
        async for data in resp.content.iter_any():
            buf += data
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                if frame.startswith(b"data: "):
                    arrivals.append(time.perf_counter() - start)
    # >= 8 events 200 ms apart: the first must land long before the last was even sent.
    assert len(arrivals) >= 8
    assert arrivals[-1] - arrivals[0] > 1.0
    assert arrivals[0] < arrivals[-1] / 3


async def test_include_usage_is_always_requested_upstream_but_stripped_unless_asked(gateway, emulator, http):
    emu = await emulator("openai")
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        events = await read_events(resp)
    assert emu.state.last_request.json["stream_options"] == {"include_usage": True}
    assert all(b'"choices":[]' not in e for e in events)
    async with http.post(gw.v1 + "/chat/completions",
                         json=chat(stream_options={"include_usage": True})) as resp:
        events = await read_events(resp)
    usage = orjson.loads(events[-2])["usage"]
    assert usage["prompt_tokens"] == 5 and usage["completion_tokens"] > 0


async def test_client_disconnect_cancels_the_upstream_request(gateway, emulator, http):
    emu = await emulator("openai", release=asyncio.Event())
    gw = await gateway(make_config(openai_provider(emu.url)))
    resp = await http.post(gw.v1 + "/chat/completions", json=chat())
    await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    resp.close()  # the client goes away mid-stream
    await asyncio.wait_for(emu.state.client_closed.wait(), 5)
    provider = gw.gw.registry["oai"]
    for _ in range(100):
        if provider.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert provider.in_flight == 0
    async with http.post(gw.v1 + "/chat/completions", json=chat(stream=False)) as again:
        assert again.status == 200


async def test_upstream_drop_mid_stream_ends_with_an_error_event(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.drop_mid_stream(after=2))
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        assert resp.status == 200
        events = await read_events(resp)
    assert events[-1] != b"[DONE]"
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_connection_error" and error["message"].startswith("oai:")
    assert set(error) == {"message", "type", "code", "param"}


async def test_stream_without_terminal_event_is_an_error_not_a_silent_end(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.no_terminal())
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        events = await read_events(resp)
    assert b"upstream_protocol_error" in events[-1]


async def test_stalled_stream_hits_the_idle_timeout(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.stall(after=1))
    gw = await gateway(make_config(openai_provider(emu.url, timeouts={"idle_s": 0.3})))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        events = await asyncio.wait_for(read_events(resp), 5)
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_timeout"


async def test_a_stream_past_its_total_time_ends_with_a_timeout_event_without_charging_the_vendor(
        gateway, emulator, http):
    emu = await emulator("openai", chunk_delay=0.15)
    gw = await gateway(make_config(openai_provider(emu.url, timeouts={"total_s": 0.4, "idle_s": 5},
                                                   circuit_breaker={"consecutive_failures": 1})))
    started = time.perf_counter()
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        events = await asyncio.wait_for(read_events(resp), 5)
    assert 0.4 < time.perf_counter() - started < 1.5  # ended at the first read past the limit
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_timeout" and "total time limit" in error["message"]
    assert len(events) >= 3  # what arrived in time was relayed
    assert gw.gw.registry["oai"].breaker.state == "closed"  # one charged failure would open it


async def test_a_stream_head_slower_than_first_byte_s_is_a_504(gateway, emulator, http):
    """first_byte_s below idle_s: the head is bounded by first_byte_s (otherwise by idle_s)."""
    emu = await emulator("openai")
    emu.state.script(Fault.delay_first_byte(0.6))
    provider = openai_provider(emu.url, timeouts={"first_byte_s": 0.2, "idle_s": 5}, retry={"attempts": 0})
    gw = await gateway(make_config(provider))
    started = time.perf_counter()
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        assert resp.status == 504
    assert time.perf_counter() - started < 0.55


async def test_upstream_error_before_streaming_keeps_its_http_status(gateway, emulator, http):
    emu = await emulator("openai")
    emu.state.script(Fault.status(429, "slow down", headers={"retry-after": "7"}))
    gw = await gateway(make_config(openai_provider(emu.url)))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        body = await resp.json()
    assert "slow down" in body["error"]["message"]


async def raw_frames(resp) -> list[bytes]:
    body = b""
    async for data in resp.content.iter_any():
        body += data
    return [f for f in body.split(b"\n\n") if f]


async def test_a_quiet_stream_gets_ping_comments_a_busy_one_does_not(gateway, emulator, http):
    """Keep-alives are for streams that went quiet (a vendor thinking before its first token,
    or between tokens); a stream sending tokens more often than the interval needs none."""
    emu = await emulator("openai", chunk_delay=0.25)
    gw = await gateway(make_config(openai_provider(emu.url), server={"sse_ping_interval_s": 0.1}))
    async with http.post(gw.v1 + "/chat/completions", json=chat()) as resp:
        frames = await raw_frames(resp)
    pings = [f for f in frames if f == b": ping"]
    assert len(pings) >= 3
    assert frames[-1] == b"data: [DONE]"
    assert all(f.startswith(b"data: ") or f == b": ping" for f in frames)

    emu.state.chunk_delay = 0.02
    gw_busy = await gateway(make_config(openai_provider(emu.url), server={"sse_ping_interval_s": 0.15}))
    async with http.post(gw_busy.v1 + "/chat/completions", json=chat()) as resp:
        frames = await raw_frames(resp)
    assert b": ping" not in frames and frames[-1] == b"data: [DONE]"


@pytest.mark.skipif(TCP_USER_TIMEOUT is None, reason="TCP_USER_TIMEOUT is Linux-only")
async def test_client_connections_get_the_send_timeout_once_per_connection(gateway, http):
    """A client that stops reading is dropped by the kernel after client_send_timeout_s of
    unacknowledged data; the option is set when the connection is accepted, not per response."""
    gw = await gateway(make_config(server={"client_send_timeout_s": 7.5}))
    async with http.post(gw.v1 + "/chat/completions", json=chat(model="mock-1")) as resp:
        await read_events(resp)
    (handler,) = gw.runner.server.connections
    sock = handler.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT) == 7500
