"""Upstream I/O: one pooled ``aiohttp.ClientSession`` per configured provider.

This is the error-mapping boundary: aiohttp and timeout exceptions become the most specific
``Upstream*`` error here (``raise ... from``), with messages that name the provider but never its
URL, headers or key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_proto import ResponseHandler

from gateway import __version__
from gateway.adapter import UpstreamRequest
from gateway.config import ProviderConfig
from gateway.deadlines import INF, Deadlines, Watch
from gateway.errors import GatewayError, UpstreamConnectionError, UpstreamTimeoutError


@dataclass(slots=True)
class Attempt:
    """One try against one target; hooks may add ``headers`` (e.g. ``traceparent``)."""

    provider: str
    provider_type: str
    model: str
    number: int
    stream: bool
    headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    stash: dict[Any, Any] = field(default_factory=dict)
    # Sent although the provider's circuit is open: every target of the route was open (the
    # first attempt of such a request only, so counting these counts requests).
    panic: bool = False


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamBody(Protocol):
    status: int
    headers: Mapping[str, str]

    def iter_any(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...


def reader(body: StreamBody) -> Callable[[], Awaitable[bytes]]:
    """A function that returns a stream body's next bytes, ``b""`` at its end. An HTTP body's
    own ``readany`` when it has one: awaited directly, it is one coroutine fewer per read than
    ``async for`` over ``iter_any``; other bodies (custom transports) through ``iter_any``."""
    readany = getattr(body, "readany", None)
    if readany is not None:
        return readany
    it = body.iter_any().__aiter__()

    async def next_bytes() -> bytes:
        async for data in it:
            if data:
                return data
        return b""

    return next_bytes


class Transport(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, req: UpstreamRequest) -> RawResponse: ...

    def stream(self, req: UpstreamRequest) -> Any:
        """Async context manager yielding a ``StreamBody``."""


def map_exception(provider: str, exc: BaseException) -> GatewayError:
    if isinstance(exc, TimeoutError):  # asyncio and aiohttp's ServerTimeoutError alike
        return UpstreamTimeoutError(f"{provider}: upstream did not answer in time", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectionError(f"{provider}: upstream connection broke mid-response", provider=provider)
    return UpstreamConnectionError(
        f"{provider}: upstream connection failed ({type(exc).__name__})", provider=provider
    )


UPSTREAM_EXCEPTIONS = (aiohttp.ClientError, OSError, TimeoutError)
USER_AGENT = f"llm-gateway/{__version__}"


class ResponseProtocol(ResponseHandler):
    """aiohttp's client protocol without a no-op per HTTP chunk. Taking a chunk off a response
    buffer that is under its low-water mark calls ``resume_reading()``, which re-runs the parser
    on empty input and resumes the transport even when nothing was paused. Vendors send one HTTP
    chunk per SSE event, so that was ~15% of a bare aiohttp relay's CPU per stream. The parser
    only ever has input to resume after a pause, and every pause sets one of the two flags."""

    __slots__ = ()

    def resume_reading(self, resume_parser: bool = True) -> None:
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)


# Guarded: these are aiohttp internals (3.14's); with another layout the stock protocol is used.
FAST_RESUME = {"_reading_paused", "_buffer_paused"} <= set(getattr(BaseProtocol, "__slots__", ()))


def new_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    connector = aiohttp.TCPConnector(**kwargs)
    if FAST_RESUME and hasattr(connector, "_factory"):
        connector._factory = partial(ResponseProtocol, loop=connector._loop)
    return connector


class HttpTransport:
    """Pooled HTTP(S) transport; the session lives from app start-up to shutdown."""

    def __init__(self, provider: str, config: ProviderConfig) -> None:
        self.provider = provider
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        t = config.timeouts
        # Every limit but connect_s: a request's total_s, a head's first_byte_s (or idle_s or
        # total_s, whichever is smallest), each wait for more of a body's bytes (idle_s).
        self.deadlines = Deadlines(min(t.total_s, t.first_byte_s, t.idle_s))

    async def open(self) -> None:
        pool, t = self.config.pool, self.config.timeouts
        connector = new_connector(
            limit=pool.max_connections,
            limit_per_host=pool.max_connections_per_host,
            keepalive_timeout=pool.keepalive_s,
            ttl_dns_cache=int(pool.dns_cache_s),
        )
        # sock_connect costs a timer only when a new connection is made. Every other limit is a
        # watch on self.deadlines (no timer per request): aiohttp's sock_read would arm a timer
        # when the request is sent and cancel and re-arm one on every read (two per non-stream
        # request, ~1.5% of its CPU with uvloop). A stream's total_s is checked per read by the
        # dispatcher.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect_s, sock_read=None),
            # No cookie jar: one session serves every client, so a vendor's cookie (e.g. a CDN's
            # bot-management one) must not be replayed on other clients' requests; and an empty
            # jar costs nothing per request, a filled one a filter and expiry pass.
            cookie_jar=aiohttp.DummyCookieJar(),
            # A header of its own rather than skip_auto_headers, which costs aiohttp a header copy
            # and a sort per request.
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    async def close(self) -> None:
        self.deadlines.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"transport for provider {self.provider!r} is not open")
        return self._session

    def _request(self, req: UpstreamRequest) -> Any:
        headers = req.headers
        data = None
        if req.content is not None:
            data = req.content
            headers = {"Content-Type": "application/json", **headers}
        elif req.json is not None:
            data = orjson.dumps(req.json)
            headers = {"Content-Type": "application/json", **headers}
        return self.session.request(req.method, req.url, headers=headers, data=data)

    async def send(self, req: UpstreamRequest) -> RawResponse:
        t = self.config.timeouts
        started = time.monotonic()
        total_at = started + t.total_s
        try:
            with self.deadlines.watch(min(started + min(t.first_byte_s, t.idle_s), total_at)) as watch:
                # Awaited, not ``async with``: one coroutine layer fewer on every resumption.
                resp = await self._request(req)
                try:
                    content = resp.content
                    # A JSON answer usually arrives with its head: then it is taken from the
                    # buffer as is, without waiting machinery (~25 calls), and no limit is moved.
                    if content.is_eof():
                        body = content.read_nowait()
                    else:
                        body = await read_body(content, watch, total_at, t.idle_s)
                    return RawResponse(resp.status, resp.headers, body)
                finally:
                    resp.release()
        except UPSTREAM_EXCEPTIONS as exc:
            raise map_exception(self.provider, exc) from exc

    def stream(self, req: UpstreamRequest) -> StreamContext:
        return StreamContext(self, req)


async def read_body(content: aiohttp.StreamReader, watch: Watch, total_at: float, idle_s: float) -> bytes:
    """The rest of a body that did not come with its head: each wait for more bytes is bounded
    by idle_s, the whole by total_s."""
    parts = []
    while True:
        watch.deadline = min(total_at, time.monotonic() + idle_s)
        data = await content.readany()
        if not data:
            return b"".join(parts)
        parts.append(data)


class StreamContext:
    """``async with transport.stream(req) as body``: the response head is awaited on entry, and the
    connection goes back to the pool on exit when the body was read to the end (aiohttp drops it
    instead when it was not: client gone, error mid-stream). A plain class, not
    ``@asynccontextmanager``: that is a generator and two extra frames on every resumption of
    the stream.

    Its time limits come from one watch on the provider's deadline clock: on the head
    (``first_byte_s``, or ``idle_s`` or ``total_s`` if smaller), then on each read (``idle_s``),
    and none while the stream waits on anything else (the client). aiohttp's ``sock_read``
    would instead cancel and re-arm a timer on every chunk that arrives, one per token."""

    __slots__ = ("_idle_s", "_readany", "_req", "_resp", "_transport", "_watch", "headers", "status")

    def __init__(self, transport: HttpTransport, req: UpstreamRequest) -> None:
        self._transport = transport
        self._req = req
        self._resp: aiohttp.ClientResponse | None = None
        self._watch: Watch | None = None

    async def __aenter__(self) -> StreamContext:
        t = self._transport
        timeouts = t.config.timeouts
        self._idle_s = timeouts.idle_s
        head_s = min(timeouts.first_byte_s, timeouts.idle_s, timeouts.total_s)
        watch = t.deadlines.watch(time.monotonic() + head_s)
        try:
            resp = await t._request(self._req)
        except BaseException as exc:
            t.deadlines.discard(watch)
            if isinstance(exc, asyncio.CancelledError) and watch.expired():
                raise map_exception(t.provider, TimeoutError()) from None
            if isinstance(exc, UPSTREAM_EXCEPTIONS):
                raise map_exception(t.provider, exc) from exc
            raise
        watch.deadline = INF
        self._watch = watch
        self._resp = resp
        self._readany = resp.content.readany
        self.status = resp.status
        self.headers = resp.headers
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watch is not None:
            self._transport.deadlines.discard(self._watch)
        if self._resp is not None:
            self._resp.release()

    async def readany(self) -> bytes:
        """The next bytes that arrived (``b""`` at the end), waiting at most ``idle_s``."""
        watch = self._watch
        assert watch is not None
        watch.deadline = time.monotonic() + self._idle_s
        try:
            return await self._readany()
        except asyncio.CancelledError:
            if watch.expired():
                raise TimeoutError from None  # mapped like aiohttp's read timeout
            raise
        finally:
            watch.deadline = INF

    async def iter_any(self) -> AsyncIterator[bytes]:
        while data := await self.readany():
            yield data

    async def read(self) -> bytes:
        return b"".join([data async for data in self.iter_any()])
