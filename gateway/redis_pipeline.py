"""One Redis connection for the commands a client waits on, pipelined automatically.

The commands on the request path (a rate-limit admission, a cache lookup) are small and many at
once. Sent one by one through a pool, each pays a pool checkout, a lock, a timeout object and a
write of its own, and two commands one request needs (its admission and its cache lookup) would
cost it two round trips. ``AutoPipeline`` instead keeps one connection of its own (made with the
pool's settings, not taken from it): every command called in the same event-loop iteration goes out
in one write, the replies come back in the same order (Redis answers a connection's commands in
order), and each caller's future is resolved as its reply is read. A request that starts its
cache lookup and then its admission in one iteration therefore waits for one round trip, and a
burst of concurrent requests shares writes.

Bounds: every batch has one timer. A command still unanswered ``timeout_s`` after it was called,
and after it was written (a busy loop may write it late), fails with ``TimeoutError`` (the caller's
store-error policy takes over) when Redis has answered nothing since the batch was written: Redis
is stopped, gone or stuck. When Redis has answered
since, it is alive and working through what was sent before (the replies come in order), and the
wait is the event loop's, not Redis's: failing then would hand a busy gateway's admissions to
``on_store_error`` and open the breaker on a healthy Redis. The timer is then set once more, up to
``MAX_WAITS`` times ``timeout_s`` in all. Before failing, the expiry lets the loop read what has
already arrived: three turns of the loop (a reply polled in the turn the timer fired wakes the
reader one turn later, and uvloop runs that wake-up after the callbacks queued before it). A reply
that comes after its command failed is dropped. A connection error fails every command in flight;
the next command connects again (within the pool's connect timeout). A Redis that is stopped keeps
the connection: its replies still come in order once it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterator
from typing import Any

from hiredis import Reader, pack_command
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as StoreConnectionError
from redis.exceptions import InvalidResponse, RedisError, ResponseError

MAX_WAITS = 4
READ_SIZE = 65536
INCOMPLETE = object()  # hiredis's answer while a reply is not complete yet
DONE = asyncio.Future.done  # called by map() in C over a batch's futures (the loop's own futures)


class Recent:
    """The command names of the last writes, for tests and benchmarks; worked out when read, so a
    write only keeps a reference to its list of commands."""

    __slots__ = ("_writes",)

    def __init__(self, writes: int = 16) -> None:
        self._writes: deque[list[tuple[Any, ...]]] = deque(maxlen=writes)

    def append(self, commands: list[tuple[Any, ...]]) -> None:
        self._writes.append(commands)

    def clear(self) -> None:
        self._writes.clear()

    def __len__(self) -> int:
        return len(self._writes)

    def __getitem__(self, i: int) -> tuple[str, ...]:
        return tuple(str(command[0]) for command in self._writes[i])

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return (self[i] for i in range(len(self._writes)))


class Batch:
    """The commands of one loop iteration, written together, bounded by one timer."""

    __slots__ = ("commands", "futures", "waits", "written_at")

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.written_at = math.inf
        self.waits = 0


class AutoPipeline:
    def __init__(self, pool: ConnectionPool, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.batches = 0  # writes, for tests and benchmarks: commands per write = calls / batches
        self.calls = 0
        self.recent = Recent()  # the last writes' command names
        self.read_at = -math.inf  # loop time of the last reply read
        self._batch = Batch()
        self._waiting: deque[asyncio.Future[Any]] = deque()  # written, reply not read yet, in order
        self._conn: AbstractConnection | None = None
        self._wake: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send ``args`` as one command with the others of this iteration; the reply, a
        ``ResponseError`` (e.g. ``NoScriptError``), a connection error or ``TimeoutError``."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()  # a pipeline lives in the loop that made it
        fut = loop.create_future()
        batch = self._batch
        if not batch.futures:
            # One timer per batch bounds all of its commands, connect and write included.
            loop.call_at(loop.time() + self.timeout_s, self._expire, batch)
            if self._writer is None or self._writer.done():
                self._writer = loop.create_task(self._write_loop())
            elif self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
        batch.commands.append(args)
        batch.futures.append(fut)
        self.calls += 1
        return fut

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._batch.futures:
                self._wake = loop.create_future()
                await self._wake
            batch, self._batch = self._batch, Batch()
            commands, futures = batch.commands, batch.futures
            if any(map(DONE, futures)):  # timed out or cancelled before the write: not sent
                kept = [(command, fut) for command, fut in zip(commands, futures, strict=True) if not fut.done()]
                if not kept:
                    continue
                commands, futures = [command for command, _ in kept], [fut for _, fut in kept]
            try:
                conn = await self._connection()
                # hiredis packs in C, ~8x faster than redis-py's Python packer on this path.
                packed = b"".join(map(pack_command, commands))
                writer = conn._writer  # redis-py's StreamWriter
                if writer is None:
                    raise StoreConnectionError("not connected")
                self._waiting.extend(futures)
                batch.written_at = loop.time()
                # Written now, in this task: redis-py's send_packed_command would run each write in
                # a task of its own (asyncio.wait_for), a loop turn later. drain() waits only while
                # Redis does not read (stopped); the batch timers bound the callers meanwhile.
                writer.write(packed)
                await writer.drain()
                self.batches += 1
                self.recent.append(commands)
            except (OSError, RedisError, TimeoutError) as exc:
                await self._broken(exc, futures)

    def _expire(self, batch: Batch, turns: int = 0) -> None:
        if all(map(DONE, batch.futures)):
            return
        loop = asyncio.get_running_loop()
        if turns < 3:  # let the loop read replies that have arrived but not been read yet
            loop.call_soon(self._expire, batch, turns + 1)
            return
        written_by = batch.written_at + self.timeout_s  # inf while not written: no more time for that
        if written_by < math.inf and written_by > loop.time():  # written late by a busy loop: Redis's time
            # counts from the write
            loop.call_at(written_by, self._expire, batch)
            return
        batch.waits += 1
        if self.read_at >= batch.written_at and batch.waits < MAX_WAITS:
            loop.call_at(loop.time() + self.timeout_s, self._expire, batch)  # Redis answers: ours is coming
            return
        for fut in batch.futures:
            if not fut.done():
                fut.set_exception(TimeoutError("Redis did not answer in time"))

    async def _connection(self) -> AbstractConnection:
        conn = self._conn
        if conn is None:
            # A connection of its own, made with the pool's settings but not taken from it: the
            # pool stays whole for what needs a connection of its own for a while (script loads,
            # the breakers' probes, lock scripts), however small redis.max_connections is.
            conn = self._conn = self.pool.make_connection()
        if not conn.is_connected:
            await conn.connect()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_loop(conn))
        return conn

    async def _read_loop(self, conn: AbstractConnection) -> None:
        """Resolve the callers' futures, in order, from every reply of each read. redis-py's
        ``read_response`` costs a few coroutine calls and timeout checks per reply; here one
        hiredis reader parses whatever a read brought (often a whole batch's replies) in C."""
        stream = conn._reader  # redis-py's StreamReader; redis-py's own parser read only the handshake
        if stream is None:
            await self._broken(StoreConnectionError("not connected"), [])
            return
        # Error replies become the exceptions redis-py would raise (NoScriptError for NOSCRIPT...).
        replies = Reader(protocolError=InvalidResponse, replyError=conn._parser.parse_error,
                         notEnoughData=INCOMPLETE)
        waiting = self._waiting
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await stream.read(READ_SIZE)
                if not data:
                    raise StoreConnectionError("Redis closed the connection")
                replies.feed(data)
                self.read_at = loop.time()
                while (reply := replies.gets()) is not INCOMPLETE:
                    if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                        raise StoreConnectionError("unexpected reply")
                    fut = waiting.popleft()
                    if fut.done():
                        continue  # timed out or cancelled: the reply is dropped
                    if isinstance(reply, ResponseError):  # the command's own error: only its caller's
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
            except (OSError, RedisError) as exc:
                await self._broken(exc, [])
                return

    async def _broken(self, exc: BaseException, batch: list[asyncio.Future[Any]]) -> None:
        """Fail what is in flight and drop the connection; the next command connects again."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()  # it reads the old stream; the next connection gets a reader of its own
        failed = list(self._waiting) + batch
        self._waiting.clear()
        for fut in failed:
            if not fut.done():
                fut.set_exception(StoreConnectionError(f"{type(exc).__name__} on the pipelined connection"))
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.disconnect(nowait=True)

    async def close(self) -> None:
        for task in (self._writer, self._reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._reader = None
        for fut in [*self._waiting, *self._batch.futures]:
            if not fut.done():
                fut.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()

