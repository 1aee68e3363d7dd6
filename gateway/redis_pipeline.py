"""One Redis connection for the commands a client waits on, pipelined automatically.

Sent one by one through a pool, each command on the request path (an admission, a cache lookup)
pays a pool checkout, a lock, a timeout object and a write, and one request's admission and lookup
cost two round trips. ``AutoPipeline`` keeps one connection of its own (the pool's settings, not
taken from it): every command called in one event-loop iteration goes out in one write, replies
come back in order, and each caller's future is resolved as its reply is read.

A command costs a future and two list appends; the rest is per batch or per read, and no task or
coroutine while connected: the batch's first command queues its write as a callback (next loop
iteration, after every command of this one), straight to the transport. After redis-py's
handshake the transport's protocol is ``Replies``: one hiredis reader parses each read in C and
resolves the futures in that callback. Only connecting is a task. While Redis does not read
(writing paused: Redis stopped) nothing more is written.

Bounds: one timer for the pipeline, set for the oldest batch not answered yet (under load it fires
about once per ``timeout_s``). A command still unanswered ``timeout_s`` after it was called, and
after it was written (a busy loop may write it late), fails with ``TimeoutError`` (the caller's
store-error policy takes over) when Redis has answered nothing since the batch was written: Redis
is stopped, gone or stuck. When Redis has answered since, it is alive and working through what was
sent before: the wait is the event loop's, and failing would hand a busy gateway's admissions to
``on_store_error`` and open the breaker on a healthy Redis; the batch gets ``timeout_s`` more, up
to ``MAX_WAITS`` times in all. Before failing, the expiry lets the loop read what already arrived
(three turns). A reply that comes after its command failed is dropped. A connection error fails
every command in flight; the next command connects again (within the pool's connect timeout). A
stopped Redis keeps the connection: its replies still come in order once it runs again.
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
INCOMPLETE = object()  # hiredis's answer while a reply is not complete yet
DONE = asyncio.Future.done  # called by map() in C over a batch's futures (the loop's own futures)


class Recent(deque[list[tuple[Any, ...]]]):
    """The command names of the last writes (tests, benchmarks), worked out only when read."""

    def __init__(self, writes: int = 16) -> None:
        super().__init__(maxlen=writes)

    def __getitem__(self, i: int) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(str(command[0]) for command in super().__getitem__(i))

    def __iter__(self) -> Iterator[tuple[str, ...]]:  # type: ignore[override]
        return (self[i] for i in range(len(self)))


class Batch:
    """The commands of one loop iteration, written together, bounded by ``deadline``."""

    __slots__ = ("commands", "deadline", "futures", "waits", "written_at")

    def __init__(self, deadline: float) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.deadline = deadline
        self.written_at = math.inf
        self.waits = 0


class Replies(asyncio.Protocol):
    """The transport's protocol after redis-py's handshake, while its pipeline's current one."""

    def __init__(self, pipe: AutoPipeline, transport: asyncio.WriteTransport, conn: AbstractConnection) -> None:
        self.pipe = pipe
        self.transport = transport
        # Error replies become the exceptions redis-py would raise (NoScriptError for NOSCRIPT...).
        self.parser = Reader(protocolError=InvalidResponse, replyError=conn._parser.parse_error,
                             notEnoughData=INCOMPLETE)
        loop = asyncio.get_running_loop()
        self.time = loop.time
        self.closed = loop.create_future()  # the transport's end, for close()

    def data_received(self, data: bytes) -> None:
        if self.pipe._replies is self:
            self.pipe._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.pipe._replies is self:
            self.pipe._broken(exc or StoreConnectionError("Redis closed the connection"))

    def pause_writing(self) -> None:
        if self.pipe._replies is self:
            self.pipe._paused = True

    def resume_writing(self) -> None:
        if self.pipe._replies is self:
            self.pipe._paused = False
            self.pipe._flush()


class AutoPipeline:
    def __init__(self, pool: ConnectionPool, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.batches = 0  # writes, for tests and benchmarks: commands per write = calls / batches
        self.calls = 0
        self.recent = Recent()  # the last writes' command names
        self.read_at = -math.inf  # loop time of the last reply read
        self._batch: Batch | None = None  # the commands called since the last write
        self._timed: deque[Batch] = deque()  # batches not known to be answered, oldest first
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()  # written, reply not read yet, in order
        self._conn: AbstractConnection | None = None
        self._replies: Replies | None = None  # set while connected
        self._attached: Replies | None = None  # the protocol of the connection's transport
        self._paused = False
        self._queued = False  # a write is queued for the next loop iteration
        self._connecting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send ``args`` as one command with the others of this iteration; the reply, a
        ``ResponseError`` (e.g. ``NoScriptError``), a connection error or ``TimeoutError``."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()  # a pipeline lives in the loop that made it
        fut = loop.create_future()
        batch = self._batch
        if batch is None:
            batch = self._open(loop)
        batch.commands.append(args)
        batch.futures.append(fut)
        return fut

    def _open(self, loop: asyncio.AbstractEventLoop) -> Batch:
        """A batch for this iteration's commands, its write queued and its bound set."""
        batch = self._batch = Batch(loop.time() + self.timeout_s)
        self._timed.append(batch)
        if self._timer is None:
            self._timer = loop.call_at(batch.deadline, self._tick)
        if self._replies is not None:
            if not self._queued:  # one queued write at a time: it takes every command called until it runs
                self._queued = True
                loop.call_soon(self._flush, True)
        elif self._connecting is None:
            self._connecting = loop.create_task(self._connect())
        return batch

    def _flush(self, queued: bool = False) -> None:
        """Write the batch, if connected and Redis reads; else the connection's end writes it."""
        self._queued = self._queued and not queued
        batch, replies = self._batch, self._replies
        if batch is None or self._paused:
            return
        if replies is None:  # the connection broke since the batch was opened
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        self._batch = None
        commands, futures = batch.commands, batch.futures
        self.calls += len(commands)
        if any(map(DONE, futures)):  # timed out or cancelled before the write: not sent
            commands = [c for c, fut in zip(commands, futures, strict=True) if not fut.done()]
            futures = [fut for fut in futures if not fut.done()]
            if not futures:
                return
        # hiredis packs in C, ~8x faster than redis-py's Python packer on this path.
        packed = b"".join(map(pack_command, commands))
        self._waiting.extend(futures)
        batch.written_at = replies.time()
        try:
            replies.transport.write(packed)
        except (OSError, RuntimeError) as exc:  # the transport closed under us
            self._broken(exc)
            return
        self.batches += 1
        self.recent.append(commands)

    def _tick(self) -> None:
        """Forget the batches answered, expire those past their deadline, wait for the oldest left."""
        timed, self._timer = self._timed, None
        assert self._loop is not None
        now = self._loop.time()
        while timed:
            batch = timed[0]
            if all(map(DONE, batch.futures)):
                timed.popleft()
                if batch is self._batch:  # none of it left to write: later commands get a batch of their own
                    self._batch = None
            elif batch.deadline <= now:
                timed.popleft()
                self._expire(batch)
            else:
                self._timer = self._loop.call_at(batch.deadline, self._tick)
                return

    def _expire(self, batch: Batch, turns: int = 0) -> None:
        if all(map(DONE, batch.futures)):
            return
        loop = asyncio.get_running_loop()
        if turns < 3:  # let the loop read replies that have arrived but not been read yet
            loop.call_soon(self._expire, batch, turns + 1)
            return
        written_by = batch.written_at + self.timeout_s  # inf while not written: no more time for that
        if math.inf > written_by > loop.time():  # written late by a busy loop: Redis's time counts from the write
            loop.call_at(written_by, self._expire, batch)
            return
        batch.waits += 1
        if self.read_at >= batch.written_at and batch.waits < MAX_WAITS:
            loop.call_at(loop.time() + self.timeout_s, self._expire, batch)  # Redis answers: ours is coming
            return
        if batch is self._batch:  # never written: later commands get a batch (and a bound) of their own
            self._batch = None
        for fut in batch.futures:
            if not fut.done():
                fut.set_exception(TimeoutError("Redis did not answer in time"))

    async def _connect(self) -> None:
        """Connect (redis-py's handshake), take the transport over, and write what waits."""
        try:
            conn = self._conn
            if conn is None:
                # Not taken from the pool: it stays whole for script loads, probes and lock scripts.
                conn = self._conn = self.pool.make_connection()
            self._attached = None
            await conn.connect()
            transport = conn._writer.transport if conn._writer is not None else None  # past the handshake
            if transport is None or transport.is_closing():
                raise StoreConnectionError("not connected")
            self._paused = False
            self._replies = self._attached = Replies(self, transport, conn)
            transport.set_protocol(self._replies)
        except (OSError, RedisError, TimeoutError) as exc:
            self._broken(exc)
        finally:
            self._connecting = None
        self._flush()

    def _received(self, replies: Replies, data: bytes) -> None:
        """Resolve the callers' futures, in order, from every reply of this read."""
        parser, waiting = replies.parser, self._waiting
        self.read_at = replies.time()
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not INCOMPLETE:
                if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                    raise StoreConnectionError("unexpected reply")
                fut = waiting.popleft()
                if fut.done():
                    continue  # timed out or cancelled: the reply is dropped
                if isinstance(reply, ResponseError):  # the command's own error: only its caller's
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)
        except RedisError as exc:
            self._broken(exc)

    def _broken(self, exc: BaseException) -> None:
        """Fail what is in flight (or waited to connect), drop the connection; the next connects again."""
        failed, self._waiting = [*self._waiting], deque()
        if self._replies is None and self._batch is not None:  # never written: no connection
            failed += self._batch.futures
            self._batch = None
        self._replies = None
        for fut in failed:
            if not fut.done():
                fut.set_exception(StoreConnectionError(f"{type(exc).__name__} on the pipelined connection"))
        if self._conn is not None:
            self._conn._close()  # the transport, at once; redis-py connects again on the next connect()
        if self._batch is not None and self._connecting is None:  # called since: a new connection
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def close(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None and connecting is not asyncio.current_task():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        if self._timer is not None:
            self._timer.cancel()
        pending = [*self._waiting, *(self._batch.futures if self._batch is not None else ())]
        self._waiting.clear(), self._timed.clear()
        self._timer = self._replies = self._batch = None
        for fut in pending:
            fut.cancel()  # a no-op for those done
        conn, attached, self._conn, self._attached = self._conn, self._attached, None, None
        if conn is not None:
            # Once the transport's protocol is ours, redis-py's close cannot wait for its end: we do.
            await conn.disconnect(nowait=attached is not None)
            if attached is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout_s):
                        await attached.closed
