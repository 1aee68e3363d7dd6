"""Limits and cache both on Redis: a request waits for one Redis round trip, not two.

The cache lookup starts with the admission and both go out in one write on the shared pipelined
connection (``gateway.redis_pipeline``); the cache store follows the response. Proved twice, against
a real redis-server: by what is written (one write per request before its response, Redis's own
command counts), and by time, through a proxy that delays everything sent to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from typing import Any

from plugins import ratelimit
from plugins.ratelimit_redis import RedisBackend
from tests.conftest import MOCK_PROVIDER, make_config
from tests.plugins.test_cache import CHAT_BODY
from tests.plugins.test_ratelimit import chat
from tests.support import free_port

KEY = "sk-team-key-0123456789"
ROOMY = {"requests_per_minute": 100_000}


def both_on_redis(url: str, timeout_s: float) -> dict[str, Any]:
    return make_config(
        {**MOCK_PROVIDER, "rate_limit": ROOMY},
        redis={"url": url, "timeout_s": timeout_s, "connect_timeout_s": 2},
        rate_limit={"backend": "redis", **ROOMY},
        auth={"keys": [{"name": "team", "key": KEY, "rate_limit": ROOMY}]},
        cache={"enabled": True, "backend": "redis"},
    )


def backend_of(gw: Any) -> RedisBackend:
    backend = gw.app[ratelimit.RATE_LIMIT].backend
    assert isinstance(backend, RedisBackend)
    return backend


def body(i: int) -> dict[str, Any]:
    return {**CHAT_BODY, "messages": [{"role": "user", "content": f"question {i}"}]}


async def test_the_lookup_and_the_admission_go_out_in_one_write(gateway, http, redis_server):
    gw = await gateway(both_on_redis(redis_server.url, 0.5))
    pipe = backend_of(gw).pipe
    assert (await chat(http, gw, body(-1), Authorization=f"Bearer {KEY}"))[0] == 200  # all warm
    await asyncio.sleep(0.1)  # its store, after the response
    redis_server.command("CONFIG", "RESETSTAT")
    n = 10
    for i in range(n):
        pipe.recent.clear()
        status, headers, _ = await chat(http, gw, body(i), Authorization=f"Bearer {KEY}")
        assert status == 200 and headers["x-cache"] == "MISS"
        await asyncio.sleep(0.05)  # the store, after the response
        # The lookup (GET) and the admission (EVALSHA) in one write; the store in the next.
        assert list(pipe.recent) == [("GET", "EVALSHA"), ("SET",)], list(pipe.recent)
    status, headers, _ = await chat(http, gw, body(0), Authorization=f"Bearer {KEY}")
    assert status == 200 and headers["x-cache"] == "HIT"  # the admission still counted it
    stats = redis_server.command("INFO", "commandstats").decode()
    calls = {m[0]: int(m[1]) for m in re.findall(r"cmdstat_([a-z|]+):calls=(\d+)", stats)}
    assert (calls.get("get", 0) - 3 * (n + 1), calls["evalsha"], calls["set"] - 3 * (n + 1)) == (n + 1, n + 1, n)
    assert backend_of(gw).breaker.errors == 0


class DelayingProxy:
    """TCP to Redis; everything sent to Redis arrives ``delay_s`` late, in order."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", self.port)

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pumps = [asyncio.create_task(self.delayed(reader, up_writer)), asyncio.create_task(pump(up_reader, writer))]
        self.tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()

    async def delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunks: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()

        async def send() -> None:
            while True:
                await arrived.wait()
                while chunks:
                    due, data = chunks[0]
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    chunks.popleft()
                    writer.write(data)
                arrived.clear()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(65536):
                chunks.append((time.monotonic() + self.delay_s, data))
                arrived.set()
        finally:
            sender.cancel()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)


async def test_a_request_waits_for_one_round_trip_to_a_distant_redis(gateway, http, redis_server):
    delay = 0.15
    proxy = DelayingProxy(redis_server.port, delay)
    await proxy.start()
    try:
        gw = await gateway(both_on_redis(f"redis://127.0.0.1:{proxy.port}/0", 1.0))
        assert (await chat(http, gw, body(-1), Authorization=f"Bearer {KEY}"))[0] == 200  # all warm
        took = []
        for i in range(4):
            started = time.perf_counter()
            status, headers, _ = await chat(http, gw, body(i), Authorization=f"Bearer {KEY}")
            took.append(time.perf_counter() - started)
            assert status == 200 and headers["x-cache"] == "MISS"
        # One delayed round trip each (a lookup after the admission would make it two).
        assert delay <= min(took) and max(took) < 1.6 * delay, took
        assert backend_of(gw).breaker.errors == 0
    finally:
        await proxy.close()
