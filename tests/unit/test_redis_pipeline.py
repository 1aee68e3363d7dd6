"""The auto-pipelined connection against a real redis-server: one write per loop iteration, each
caller its own reply (or its own error), a busy event loop never taken for a slow Redis, and a
stopped, killed and restarted Redis bounded and recovered from."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.exceptions

from gateway.config import RedisConfig
from gateway.redis_client import RedisConnections
from gateway.redis_pipeline import AutoPipeline
from tests.services import RedisServer

TIMEOUT_S = 0.05  # + the 40 ms slack for a busy loop: 90 ms


async def test_one_write_per_iteration_and_each_caller_its_own_reply(redis_server: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_server.url, timeout_s=TIMEOUT_S))
    try:
        pipe = conns.pipeline()
        assert pipe is conns.pipeline()  # one per URL
        sent = [pipe.call("ECHO", f"reply {i}") for i in range(50)]
        sent.append(pipe.call("EVALSHA", "0" * 40, 0))  # an error reply: only its caller's
        sent.append(pipe.call("ECHO", "after the error"))
        replies = await asyncio.gather(*sent, return_exceptions=True)
        assert replies[:50] == [f"reply {i}".encode() for i in range(50)]
        assert isinstance(replies[50], redis.exceptions.NoScriptError)
        assert replies[51] == b"after the error"
        assert pipe.batches == 1 and list(pipe.recent) == [("ECHO",) * 50 + ("EVALSHA", "ECHO")]
    finally:
        await conns.close()


async def test_a_busy_loop_is_not_a_slow_redis(redis_server: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_server.url, timeout_s=TIMEOUT_S))
    try:
        pipe = conns.pipeline()
        await pipe.call("PING")  # connected
        first = pipe.call("ECHO", "written late")
        time.sleep(0.2)  # noqa: ASYNC251 -- the loop blocked past the bound before the command is written
        assert await first == b"written late"
        second = pipe.call("ECHO", "read late")
        await asyncio.sleep(0)  # written
        time.sleep(0.2)  # noqa: ASYNC251 -- answered at once, but read only after the bound
        assert await second == b"read late"
    finally:
        await conns.close()


async def test_stopped_killed_and_back(redis_private: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_private.url, timeout_s=TIMEOUT_S, connect_timeout_s=0.25))
    try:
        pipe = conns.pipeline()
        assert await pipe.call("PING") == b"PONG"
        redis_private.pause()
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await pipe.call("PING")
        assert time.perf_counter() - started < 0.3
        redis_private.resume()
        assert await pipe.call("ECHO", "in order") == b"in order"  # the late PONG was dropped
        redis_private.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.call("PING")
        redis_private.start()
        assert await pipe.call("PING") == b"PONG"  # connected again
    finally:
        await conns.close()


async def test_the_pipelined_connection_leaves_the_pool_whole(redis_server: RedisServer) -> None:
    """With one pooled connection, the pool still serves (script loads, breaker probes) while the
    pipelined connection is busy: it is a connection of its own, not one taken from the pool."""
    conns = RedisConnections(RedisConfig(url=redis_server.url, timeout_s=TIMEOUT_S, max_connections=1,
                                         pool_wait_s=0.05))
    try:
        assert await conns.pipeline().call("PING") == b"PONG"
        assert await conns.client().ping()
        clients = redis_server.command("CLIENT", "LIST").decode().count("cmd=")
        assert clients >= 3  # this test's own, the pipelined one, the pooled one
    finally:
        await conns.close()



@contextlib.asynccontextmanager
async def pipelined(redis: RedisServer, timeout_s: float = TIMEOUT_S) -> AsyncIterator[AutoPipeline]:
    """The pipelined connection of a ``RedisConnections`` of its own, closed afterwards."""
    conns = RedisConnections(RedisConfig(url=redis.url, timeout_s=timeout_s))
    try:
        yield conns.pipeline()
    finally:
        await conns.close()


async def test_a_command_cancelled_before_its_write_is_not_sent(redis_server: RedisServer) -> None:
    async with pipelined(redis_server) as pipe:
        await pipe.call("PING")  # connected
        pipe.recent.clear()
        dropped, kept = pipe.call("SET", "dropped", "1"), pipe.call("ECHO", "kept")
        dropped.cancel()
        assert await kept == b"kept"
        assert list(pipe.recent) == [("ECHO",)]
        assert await pipe.call("EXISTS", "dropped") == 0


async def test_redis_closing_the_connection_fails_what_is_in_flight_and_the_next_command_reconnects(
        redis_server: RedisServer) -> None:
    async with pipelined(redis_server, timeout_s=2.0) as pipe:
        client_id = await pipe.call("CLIENT", "ID")
        waiting = pipe.call("BLPOP", "never-pushed", 5)  # in flight until Redis drops the connection
        await asyncio.sleep(0.05)  # written
        assert redis_server.command("CLIENT", "KILL", "ID", str(client_id)) == b":1\r\n"
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(waiting, 1.0)
        assert await pipe.call("PING") == b"PONG"  # a new connection


async def test_one_timer_for_the_pipeline_and_nothing_kept_once_answered(redis_server: RedisServer) -> None:
    async with pipelined(redis_server) as pipe:
        for i in range(100):  # a hundred batches, each answered long before its bound
            assert await pipe.call("ECHO", str(i)) == str(i).encode()
        assert pipe.batches == 100
        await asyncio.sleep(0.2)  # past every bound: the timer forgot the answered batches and stopped
        assert not pipe._timed and pipe._timer is None
        assert await pipe.call("ECHO", "later") == b"later"  # and a new batch sets it again
        assert pipe._timer is not None
