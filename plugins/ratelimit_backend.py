"""Where rate-limit buckets live: the ``LimiterBackend`` interface and its in-process implementation.

Every limit is a leaky bucket: it holds at most ``capacity`` units and drains at ``per_minute / 60``
units a second; a request fits when ``level + amount <= capacity``, and otherwise fits after
``(level + amount - capacity) / rate`` seconds, which is its Retry-After. Both backends keep it
as GCRA state (one number per limit, see ``plugins.ratelimit_gcra``), so they answer alike.

A backend shared between gateway processes (``plugins.ratelimit_redis``) implements the same calls:
``acquire`` must be atomic over all the buckets it is given (a Lua script, for Redis), and
``settle`` applies a request's corrections (plain increments that may take a bucket over its
capacity or, negative, give units back) exactly once per settle id, without blocking the caller.
Buckets are named by ``Limit.key``; a backend creates one on first use from the ``Limit`` given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

REQUESTS = "requests"
TOKENS = "tokens"
# A charge that fits up to float rounding fits (the Redis script allows a microsecond too).
EPSILON_S = 1e-6
# One bucket of an in-process admission, laid out once (``plugins.ratelimit_plan``): its name,
# interval_s, tau_s + EPSILON_S, and for a tokens limit its capacity (None: one unit per request).
Row = tuple[str, float, float, "float | None"]


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket: ``per_minute`` units of ``kind``, at most ``capacity`` at once."""

    scope: str  # for messages: "gateway", "provider 'oai'", "key 'team-a'"
    key: str  # the bucket's name in the backend, e.g. "provider:oai:tokens"
    kind: str  # REQUESTS or TOKENS
    per_minute: int
    capacity: float
    # Derived once (GCRA's emission interval T and tolerance tau = capacity x T), not per request.
    interval_s: float = field(init=False, repr=False, compare=False)
    tau_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_s", 60.0 / self.per_minute)
        object.__setattr__(self, "tau_s", self.capacity * 60.0 / self.per_minute)

    @classmethod
    def of(cls, scope: str, key: str, kind: str, per_minute: int, window_s: float) -> Limit:
        # At least one unit, or a single request could never fit.
        return cls(scope, key, kind, per_minute, max(1.0, per_minute * window_s / 60))

    @property
    def rate_per_s(self) -> float:
        return self.per_minute / 60


# Charge, BucketView and Decision are made on every request (six of each with limits at three
# levels) and never changed after: not frozen, whose __init__ costs a setattr call per field.
@dataclass(slots=True)
class Charge:
    limit: Limit
    amount: float  # at most limit.capacity; the caller clamps


@dataclass(slots=True)
class BucketView:
    """A bucket as one ``acquire`` left it (after charging, when admitted)."""

    limit: Limit
    remaining: float  # room left
    reset_s: float  # until the bucket is empty again
    wait_s: float  # until the requested amount fits; 0 when it fits now


@dataclass(slots=True)
class Decision:
    admitted: bool
    views: tuple[BucketView, ...]

    @property
    def retry_after(self) -> float:
        return max((v.wait_s for v in self.views), default=0.0)


class LimiterBackend(Protocol):
    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        """All or nothing: when every bucket has room for its amount, charge them all and return
        ``admitted``; otherwise charge none and say how long each one needs (``wait_s``)."""

    def settle(self, request_id: str, adjustments: Sequence[tuple[Limit, float]]) -> None:
        """Add each amount to its bucket without checking room (negative gives units back, never
        below empty): the correction once a request's real token usage is known. Called once
        per request, after the client has its last byte; must not wait for a store (queue the
        work instead). A backend that may deliver a settle twice makes it idempotent under an
        id of its own, never ``request_id`` alone (a client may choose it)."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""


def view(limit: Limit, ahead_s: float, wait_s: float) -> BucketView:
    """A bucket whose TAT is ``ahead_s`` past now: its level is ``ahead_s / interval_s``."""
    return BucketView(limit, max(0.0, limit.capacity - ahead_s / limit.interval_s), ahead_s, wait_s)


class InProcessBackend:
    """Buckets in this process's memory: one float per limit in use, its theoretical arrival time
    (GCRA, the same arithmetic as the Redis scripts in ``plugins.ratelimit_gcra``, on this
    process's monotonic clock); drained ones are pruned. With several workers each has its own
    buckets: divide the limits by the worker count."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tats: dict[str, float] = {}
        self._prune_at = 1024
        self.clock = clock

    def level(self, limit: Limit) -> float:
        """Units in the bucket now (0 when it has drained)."""
        return max(0.0, self._tats.get(limit.key, 0.0) - self.clock()) / limit.interval_s

    def prune(self) -> None:
        """Forget drained buckets (a fresh one is the same): keys made at run time come and go, so
        the set is bounded by the buckets in use, not by every key ever seen. Amortised: the next
        prune waits until the set has doubled."""
        now = self.clock()
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._prune_at = max(1024, 2 * len(self._tats))

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        return self.take(charges)

    def take(self, charges: Sequence[Charge]) -> Decision:
        """``acquire`` without a coroutine: the rate-limit plugin calls it directly on this backend."""
        # Read every bucket, then charge all or none. Nothing in between can interleave, so this
        # is atomic within the event loop; one clock read for the whole admission.
        tats, now = self._tats, self.clock()
        ahead = []
        fits = True
        for c in charges:
            limit = c.limit
            before = tats.get(limit.key, now) - now
            if before < 0.0:
                before = 0.0
            after = before + c.amount * limit.interval_s
            if after > limit.tau_s + EPSILON_S:
                fits = False
            ahead.append((before, after))
        if not fits:
            return Decision(False, tuple(
                view(c.limit, before, max(0.0, after - c.limit.tau_s))
                for c, (before, after) in zip(charges, ahead, strict=True)))
        if len(tats) >= self._prune_at:
            self.prune()
            tats = self._tats
        views = []
        for c, (_, after) in zip(charges, ahead, strict=True):
            limit = c.limit
            tats[limit.key] = now + after
            room = limit.capacity - after / limit.interval_s  # view(), inlined: six per request
            views.append(BucketView(limit, room if room > 0.0 else 0.0, after, 0.0))
        return Decision(True, tuple(views))

    def take_rows(self, rows: Sequence[Row], tokens: float) -> list[float] | None:
        """``take`` over prebuilt rows, for the usual admission: each bucket's time to empty after
        its charge (one unit, or ``tokens`` up to the capacity), or None, charging nothing, when any
        lacks room (the caller then asks ``acquire`` for the refusal's views)."""
        tats, now = self._tats, self.clock()
        afters = []
        for key, interval_s, limit_s, capacity in rows:
            before = tats.get(key, now) - now
            if before < 0.0:
                before = 0.0
            if capacity is None:
                after = before + interval_s
            else:
                after = before + (tokens if tokens <= capacity else capacity) * interval_s
            if after > limit_s:
                return None
            afters.append(after)
        if len(tats) >= self._prune_at:
            self.prune()
            tats = self._tats
        for row, after in zip(rows, afters, strict=True):
            tats[row[0]] = now + after
        return afters

    def settle(self, request_id: str, adjustments: Sequence[tuple[Limit, float]]) -> None:
        # In-process, each request's settle is one call by construction: no id to remember.
        tats, now = self._tats, self.clock()
        for limit, amount in adjustments:
            tat = tats.get(limit.key, now)
            new = max(tat, now) + amount * limit.interval_s
            if new > now:
                tats[limit.key] = new
            else:
                tats.pop(limit.key, None)  # given back below empty: drained

    async def close(self) -> None:
        self._tats.clear()
