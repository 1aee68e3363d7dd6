"""A circuit breaker around a shared store (Redis): stop calling it while it is down, probe for
its return, and say so once per transition.

Closed: every call goes to the store; ``failures`` consecutive store errors open it. Open: no call
goes to the store (the caller applies its ``on_store_error`` policy at once, in microseconds); one
background task probes with a cheap command every ``probe_interval_s`` and closes the breaker on
the first answer. The time from the store answering again to calls reaching it is therefore at
most one probe interval plus one probe.

Transitions are logged once each, at WARNING when the store goes away and INFO when it is back;
the log line names the error's class, never the store URL (it may hold a password). The counters
(errors, transitions, time degraded) are read by ``/health/limits`` and the metrics collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.exceptions

log = logging.getLogger("llm_gateway.store")

# What a store that is slow, gone or confused raises. A pool with no free connection is not one of
# them: that wait is back-pressure the caller bounds itself (see RedisBackend.acquire).
STORE_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError, TimeoutError)


class StoreBreaker:
    def __init__(
        self, what: str, probe: Callable[[], Awaitable[object]], *, failures: int = 3,
        probe_interval_s: float = 0.5, degraded_note: str = "",
    ) -> None:
        self.what = what  # for log lines: "rate limits"
        self._probe = probe
        self.threshold = failures
        self.probe_interval_s = probe_interval_s
        self.degraded_note = degraded_note
        self.open = False
        self.consecutive = 0
        self.errors = 0  # store errors seen, ever
        self.opened = 0  # transitions to degraded, ever
        self.degraded_since: float | None = None
        self._prober: asyncio.Task[None] | None = None

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, exc: BaseException) -> None:
        self.errors += 1
        self.consecutive += 1
        if not self.open and self.consecutive >= self.threshold:
            self._trip(exc)

    def _trip(self, exc: BaseException) -> None:
        self.open = True
        self.opened += 1
        self.degraded_since = time.monotonic()
        log.warning("%s: shared store unavailable (%s); %s", self.what, type(exc).__name__, self.degraded_note)
        self._prober = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await self._probe()
            except STORE_ERRORS:
                self.errors += 1
                continue
            break
        down = time.monotonic() - (self.degraded_since or time.monotonic())
        self.open, self.consecutive, self.degraded_since = False, 0, None
        self._prober = None
        log.info("%s: shared store answers again after %.1fs; using it again", self.what, down)

    async def close(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
