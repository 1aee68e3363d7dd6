"""Upstream I/O: one pooled ``aiohttp.ClientSession`` per configured provider.

This is the error-mapping boundary: aiohttp and timeout exceptions become the most specific
``Upstream*`` error here (``raise ... from``), with messages that name the provider but never its
URL, headers or key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
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
        self._plain_timeout: aiohttp.ClientTimeout | None = None
        self._stream_timeout: aiohttp.ClientTimeout | None = None

    async def open(self) -> None:
        pool, t = self.config.pool, self.config.timeouts
        connector = new_connector(
            limit=pool.max_connections,
            limit_per_host=pool.max_connections_per_host,
            keepalive_timeout=pool.keepalive_s,
            ttl_dns_cache=int(pool.dns_cache_s),
        )
        # All bounds are aiohttp's own (cheaper than an asyncio.timeout per request): sock_connect
        # costs a timer only when a new connection is made; sock_read bounds every wait for bytes,
        # the head included. A non-stream request also has aiohttp's total; a stream's total_s is
        # checked per read by the dispatcher, and its head gets a first-byte timer only when
        # first_byte_s is below idle_s.
        self._plain_timeout = aiohttp.ClientTimeout(
            total=t.total_s, sock_connect=t.connect_s, sock_read=min(t.first_byte_s, t.idle_s)
        )
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect_s, sock_read=t.idle_s)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._plain_timeout,
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
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"transport for provider {self.provider!r} is not open")
        return self._session

    def _request(self, req: UpstreamRequest, timeout: aiohttp.ClientTimeout | None = None) -> Any:
        headers = req.headers
        data = None
        if req.json is not None:
            data = orjson.dumps(req.json)
            headers = {"Content-Type": "application/json", **headers}
        return self.session.request(
            req.method, req.url, headers=headers, data=data, timeout=timeout or self._plain_timeout
        )

    async def send(self, req: UpstreamRequest) -> RawResponse:
        try:
            async with self._request(req) as resp:
                return RawResponse(resp.status, resp.headers, await resp.read())
        except UPSTREAM_EXCEPTIONS as exc:
            raise map_exception(self.provider, exc) from exc

    def stream(self, req: UpstreamRequest) -> StreamContext:
        return StreamContext(self, req)


class StreamContext:
    """``async with transport.stream(req) as body``: the response head is awaited on entry, and the
    connection goes back to the pool on exit when the body was read to the end (aiohttp drops it
    instead when it was not: client gone, error mid-stream). A plain class, not
    ``@asynccontextmanager``: that is a generator and two extra frames on every resumption of
    the stream."""

    __slots__ = ("_req", "_resp", "_transport", "headers", "status")

    def __init__(self, transport: HttpTransport, req: UpstreamRequest) -> None:
        self._transport = transport
        self._req = req
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> StreamContext:
        t = self._transport
        first_byte_s = t.config.timeouts.first_byte_s
        try:
            if first_byte_s < t.config.timeouts.idle_s:
                async with asyncio.timeout(first_byte_s):
                    resp = await t._request(self._req, t._stream_timeout)
            else:  # sock_read (idle_s) bounds the wait for the head as well: no timer of our own
                resp = await t._request(self._req, t._stream_timeout)
        except UPSTREAM_EXCEPTIONS as exc:
            raise map_exception(t.provider, exc) from exc
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._resp is not None:
            self._resp.release()

    def iter_any(self) -> AsyncIterator[bytes]:
        assert self._resp is not None
        return self._resp.content.iter_any()

    async def read(self) -> bytes:
        assert self._resp is not None
        return await self._resp.read()
