"""Upstream time limits from one coarse clock, not a timer per request or per chunk.

aiohttp's ``ClientTimeout(total=...)`` and ``asyncio.timeout`` arm a timer when a request starts
and cancel it when it ends, and ``sock_read`` re-arms one on every chunk a stream receives:
Python-level work (~2% of a non-stream request's CPU here) for limits that almost never fire.
Here a wait registers a ``Watch`` (its deadline and the task waiting) in a set, which costs a
set insert and removal; a stream moves its watch's deadline before each read and parks it at
``INF`` in between (``gateway.transport.StreamContext``). One timer per
``Deadlines``, running only while watches exist, looks at them every ``tick_s`` and cancels the
tasks whose deadline passed. As with ``asyncio.timeout``, the cancellation comes out of the
``with`` block as ``TimeoutError``, and a cancellation that came from elsewhere (client gone,
shutdown) stays a cancellation.

The price is precision: a limit fires up to one tick late. The tick is 1/20 of the smallest limit
it enforces (a limit fires at most 5% late), between ``MIN_TICK_S`` and ``MAX_TICK_S``: with the
default limits (60 s and more) the clock looks once a second, whatever the number of streams.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

MIN_TICK_S = 0.01
MAX_TICK_S = 1.0
INF = float("inf")


class Watch:
    """One bounded wait. ``deadline`` (``time.monotonic()``) may be moved while it runs."""

    __slots__ = ("_cancelling", "_owner", "deadline", "fired", "task")

    def __init__(self, owner: Deadlines, task: asyncio.Task[object], deadline: float) -> None:
        self._owner = owner
        self.task = task
        self.deadline = deadline
        self.fired = False
        self._cancelling = task.cancelling()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner.watches.discard(self)
        if self.expired() and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def expired(self) -> bool:
        """Whether this watch cancelled the task (once: its cancellation is taken back). Like
        ``asyncio.timeout``, only when no other cancellation was asked for meanwhile is the
        ``CancelledError`` this watch's own, to become a ``TimeoutError``."""
        if not self.fired:
            return False
        self.fired = False
        return self.task.uncancel() <= self._cancelling


class Deadlines:
    """The watches of one event loop's requests to one upstream, and the timer that checks them."""

    def __init__(self, smallest_limit_s: float) -> None:
        self.tick_s = min(MAX_TICK_S, max(MIN_TICK_S, smallest_limit_s / 20))
        self.watches: set[Watch] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, deadline: float) -> Watch:
        """``with deadlines.watch(time.monotonic() + limit):`` in the task that waits."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.watch() needs a running task")
        w = Watch(self, task, deadline)
        self.watches.add(w)
        if self._timer is None:
            self._timer = task.get_loop().call_later(self.tick_s, self._tick)
        return w

    def discard(self, watch: Watch) -> None:
        """Stop watching (for a watch used without ``with``)."""
        self.watches.discard(watch)

    def _tick(self) -> None:
        now = time.monotonic()
        for w in self.watches:  # task.cancel() only schedules: nothing leaves the set meanwhile
            if not w.fired and w.deadline <= now:
                w.fired = True
                w.task.cancel()
        if self.watches:
            self._timer = asyncio.get_running_loop().call_later(self.tick_s, self._tick)
        else:
            self._timer = None  # idle: no timer runs until the next watch

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
