"""The upstream transport over real loopback sockets.

Under back-pressure a reader slower than the vendor makes aiohttp pause the connection and resume
it later. The gateway's client protocol skips aiohttp's resume call when nothing is paused
(``ResponseProtocol``); these tests drive the paused paths (plain and gzip bodies, streamed and
read whole) and check that every byte arrives. Also: no vendor cookie outlives its request."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time

import orjson
import pytest
from aiohttp import web

from gateway.adapter import UpstreamRequest
from gateway.config import ProviderConfig
from gateway.errors import UpstreamTimeoutError
from gateway.transport import FAST_RESUME, HttpTransport, ResponseProtocol, reader

CHUNK = bytes(range(256)) * 8  # 2 KiB, not compressible to nothing
CHUNKS = 600  # 1.2 MiB: far over aiohttp's 128 KiB high-water mark
COMPRESSIBLE = b"data: " + b"token " * 2000 + b"\n\n"  # ~12 KiB per chunk, compresses ~100x
GZ_CHUNKS = 400  # ~4.8 MiB once decompressed


async def chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for _ in range(CHUNKS):
        await resp.write(CHUNK)
    await resp.write_eof()
    return resp


async def gzipped(request: web.Request) -> web.Response:
    body = gzip.compress(COMPRESSIBLE * GZ_CHUNKS)
    return web.Response(body=body, headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})


async def trickle(request: web.Request) -> web.StreamResponse:
    """The head at once, then a byte every 50 ms (or ``every`` s) for 3 s."""
    every = float(request.query.get("every", "0.05"))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for _ in range(int(3 / every)):
        await asyncio.sleep(every)
        await resp.write(b" ")
    await resp.write_eof(b"{}")
    return resp


async def slow_head(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "3")))
    return web.json_response({})


async def late_body(request: web.Request) -> web.StreamResponse:
    """The head at once, the body 50 ms later: not in the buffer when the head is."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 11
    await resp.prepare(request)
    await asyncio.sleep(0.05)
    await resp.write_eof(b'{"late": 1}')
    return resp


async def small(request: web.Request) -> web.Response:
    return web.json_response({"small": request.transport.get_extra_info("peername")[1]})


@pytest.fixture
async def server_url(aiohttp_server):
    app = web.Application()
    app.router.add_get("/late_body", late_body)
    app.router.add_get("/small", small)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/slow_head", slow_head)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


@pytest.fixture
async def open_transport(server_url):
    opened = []

    async def open_(**timeouts: float) -> HttpTransport:
        config = ProviderConfig(name="up", type="openai", base_url=server_url, timeouts=timeouts)
        t = HttpTransport("up", config)
        await t.open()
        opened.append(t)
        return t

    yield open_
    for t in opened:
        await t.close()


@pytest.fixture
async def transport(open_transport, server_url):
    return await open_transport(first_byte_s=10, idle_s=10), server_url


async def read_slowly(t: HttpTransport, url: str) -> bytes:
    out = bytearray()
    async with t.stream(UpstreamRequest("GET", url, {})) as body:
        async for data in body.iter_any():
            out += data
            await asyncio.sleep(0.001)  # slower than loopback: the buffer fills and reading pauses
    return bytes(out)


def test_the_gateway_protocol_is_in_use_with_this_aiohttp():
    assert FAST_RESUME, "aiohttp's protocol layout changed: review gateway.transport.ResponseProtocol"


async def test_the_pooled_connections_use_the_gateway_protocol(transport):
    t, url = transport
    async with t.stream(UpstreamRequest("GET", url + "chunked", {})) as body:
        await body.read()
    pooled = [proto for conns in t.session.connector._conns.values() for proto, _ in conns]
    assert pooled and all(isinstance(proto, ResponseProtocol) for proto in pooled)


async def test_a_slow_reader_gets_every_byte_of_a_large_chunked_stream(transport):
    t, url = transport
    got = await asyncio.wait_for(read_slowly(t, url + "chunked"), 10)
    assert hashlib.sha256(got).digest() == hashlib.sha256(CHUNK * CHUNKS).digest()


async def test_a_slow_reader_gets_every_byte_of_a_gzip_stream(transport):
    t, url = transport
    got = await asyncio.wait_for(read_slowly(t, url + "gzip"), 10)
    assert got == COMPRESSIBLE * GZ_CHUNKS


async def test_a_large_gzip_body_read_whole(transport):
    t, url = transport
    raw = await asyncio.wait_for(t.send(UpstreamRequest("GET", url + "gzip", {})), 10)
    assert raw.status == 200 and raw.body == COMPRESSIBLE * GZ_CHUNKS


async def test_a_body_taken_from_the_buffer_or_awaited_is_whole_and_the_connection_pooled(transport):
    """A body that came with its head is taken from the buffer; one that did not is awaited.
    Either way the connection goes back to the pool: every request reaches the server from
    the same client port."""
    t, url = transport
    first = await t.send(UpstreamRequest("GET", url + "small", {}))
    port = orjson.loads(first.body)["small"]
    for path, body in [("late_body", b'{"late": 1}'), ("chunked", CHUNK * CHUNKS), ("small", None)]:
        raw = await asyncio.wait_for(t.send(UpstreamRequest("GET", url + path, {})), 10)
        assert raw.status == 200
        assert raw.body == body if body is not None else orjson.loads(raw.body) == {"small": port}


async def test_vendor_cookies_are_not_replayed_on_later_requests(aiohttp_server):
    """One pooled session serves every client: a Set-Cookie from the vendor must not ride along
    on the next client's request."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response({})
        resp.set_cookie("__cf_bm", "client-a-session")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    server = await aiohttp_server(app)
    url = f"http://localhost:{server.port}/v1"  # a host name: a default jar ignores cookies from IPs
    t = HttpTransport("up", ProviderConfig(name="up", type="openai", base_url=url))
    await t.open()
    try:
        for _ in range(2):
            await t.send(UpstreamRequest("POST", url + "/chat/completions", {}, {"a": 1}))
    finally:
        await t.close()
    assert seen == [None, None]


async def test_total_s_bounds_a_body_that_never_goes_idle(open_transport, server_url):
    t = await open_transport(total_s=0.4, idle_s=5, first_byte_s=5)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await t.send(UpstreamRequest("GET", server_url + "trickle", {}))
    assert 0.4 <= time.monotonic() - started < 1.5
    assert (await t.send(UpstreamRequest("GET", server_url + "slow_head?s=0", {}))).status == 200


async def test_a_body_that_goes_idle_mid_way_is_bounded_by_idle_s_and_a_steady_one_is_not(open_transport, server_url):
    """After the head, each wait for more of a body is bounded by idle_s, not the whole body: a
    body that trickles a byte every 50 ms for 3 s is read whole with idle_s at 0.3 s; one that
    sends a byte a second times out after about 0.3 s."""
    t = await open_transport(idle_s=0.3, first_byte_s=5)
    raw = await asyncio.wait_for(t.send(UpstreamRequest("GET", server_url + "trickle", {})), 10)
    assert raw.status == 200 and raw.body == b" " * 60 + b"{}"
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await t.send(UpstreamRequest("GET", server_url + "trickle?every=1", {}))
    assert 0.3 <= time.monotonic() - started < 1.0
    assert not t.deadlines.watches


@pytest.mark.parametrize("limits", [{"first_byte_s": 0.3, "idle_s": 5}, {"first_byte_s": 5, "idle_s": 0.3},
                                    {"total_s": 0.3, "first_byte_s": 0.5, "idle_s": 5}])
async def test_a_slow_head_is_bounded_by_the_smallest_limit_that_covers_it(open_transport, server_url, limits):
    t = await open_transport(**limits)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await t.send(UpstreamRequest("GET", server_url + "slow_head?s=3", {}))
    assert 0.3 <= time.monotonic() - started < 1.2
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        async with t.stream(UpstreamRequest("GET", server_url + "slow_head?s=3", {})) as body:
            await body.read()
    assert 0.3 <= time.monotonic() - started < 1.2
    assert not t.deadlines.watches


async def test_a_stream_read_waits_at_most_idle_s_but_a_slow_consumer_is_not_idle(open_transport, server_url):
    t = await open_transport(idle_s=0.3)
    async with t.stream(UpstreamRequest("GET", server_url + "chunked", {})) as body:
        for _ in range(3):
            assert await body.readany()
            await asyncio.sleep(0.5)  # busy elsewhere (a slow client) for longer than idle_s
        assert len(await body.read()) > 0
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # the dispatcher maps it (like aiohttp's read timeout)
        async with t.stream(UpstreamRequest("GET", server_url + "trickle?every=1", {})) as body:
            await body.read()
    assert 0.3 <= time.monotonic() - started < 1.5
    assert not t.deadlines.watches


async def test_reader_uses_readany_or_goes_through_iter_any_skipping_empty_reads(transport):
    class Body:
        status, headers = 200, {}

        async def iter_any(self):
            for data in (b"a", b"", b"b"):
                yield data

        async def read(self) -> bytes:
            return b""

    read = reader(Body())
    assert [await read(), await read(), await read()] == [b"a", b"b", b""]
    t, url = transport
    async with t.stream(UpstreamRequest("GET", url + "chunked", {})) as body:
        read = reader(body)
        assert read == body.readany
        got = bytearray()
        while data := await read():
            got += data
    assert bytes(got) == CHUNK * CHUNKS
