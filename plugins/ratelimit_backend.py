"""Where rate-limit buckets live: the ``LimiterBackend`` interface and its in-process implementation.

Every limit is a leaky bucket (aiolimiter's model): it holds at most ``capacity`` units and drains
at ``per_minute / 60`` units a second; a request fits when ``level + amount <= capacity``, and
otherwise fits after ``(level + amount - capacity) / rate`` seconds, which is its Retry-After.

A backend shared between gateway processes (``plugins.ratelimit_redis``) implements the same calls:
``acquire`` must be atomic over all the buckets it is given (a Lua script, for Redis), and
``settle`` applies a request's corrections (plain increments that may take a bucket over its
capacity or, negative, give units back) exactly once per settle id, without blocking the caller.
Buckets are named by ``Limit.key``; a backend creates one on first use from the ``Limit`` given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiolimiter import AsyncLimiter

REQUESTS = "requests"
TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket: ``per_minute`` units of ``kind``, at most ``capacity`` at once."""

    scope: str  # for messages: "gateway", "provider 'oai'", "key 'team-a'"
    key: str  # the bucket's name in the backend, e.g. "provider:oai:tokens"
    kind: str  # REQUESTS or TOKENS
    per_minute: int
    capacity: float

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
        id of its own derived from ``request_id`` (which a client may choose, so not it alone)."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""


class Bucket(AsyncLimiter):
    """aiolimiter's bucket plus the two things a gateway also needs: its level (for Retry-After
    and the ``x-ratelimit-*`` headers) and corrections that bypass the room check. Those read
    aiolimiter 1.x's ``_level``/``_leak``; ``tests/plugins/test_ratelimit.py`` pins them."""

    __slots__ = ()

    def level(self) -> float:
        self._leak()
        return self._level

    def force(self, amount: float) -> None:
        self._leak()
        self._level = max(0.0, self._level + amount)

    def take(self, amount: float) -> None:
        """Charge ``amount`` that :meth:`level` just showed fits: aiolimiter's ``acquire`` without
        its coroutine and waiter queue. ``InProcessBackend`` is the only caller and never waits on
        a bucket (``admit`` sleeps instead), so the queue is always empty."""
        self._level += amount


def view(limit: Limit, level: float, wait_s: float) -> BucketView:
    return BucketView(limit, max(0.0, limit.capacity - level), level / limit.rate_per_s, wait_s)


class InProcessBackend:
    """Buckets in this process's memory (one per limit in use; drained ones are pruned). With
    several workers each has its own buckets: divide the limits by the worker count."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._prune_at = 1024

    def bucket(self, limit: Limit) -> Bucket:
        bucket = self._buckets.get(limit.key)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self.prune()
            bucket = self._buckets[limit.key] = Bucket(limit.capacity, limit.capacity / limit.rate_per_s)
        return bucket

    def prune(self) -> None:
        """Forget drained buckets (a fresh one is the same): keys made at run time come and go, so
        the set is bounded by the buckets in use, not by every key ever seen. Amortised: the next
        prune waits until the set has doubled."""
        self._buckets = {key: b for key, b in self._buckets.items() if b.level() > 0}
        self._prune_at = max(1024, 2 * len(self._buckets))

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        # One leak per bucket, then the check, the charge and the views from those levels. No
        # await between the check and the charge, so this is atomic within the event loop.
        seen = [(c, bucket, bucket.level()) for c in charges for bucket in (self.bucket(c.limit),)]
        if all(level + c.amount <= c.limit.capacity for c, _, level in seen):
            for c, bucket, _ in seen:
                bucket.take(c.amount)
            return Decision(True, tuple(view(c.limit, level + c.amount, 0.0) for c, _, level in seen))
        return Decision(False, tuple(
            view(c.limit, level, max(0.0, level + c.amount - c.limit.capacity) / c.limit.rate_per_s)
            for c, _, level in seen
        ))

    def settle(self, request_id: str, adjustments: Sequence[tuple[Limit, float]]) -> None:
        # In-process, each request's settle is one call by construction: no id to remember.
        for limit, amount in adjustments:
            self.bucket(limit).force(amount)

    async def close(self) -> None:
        self._buckets.clear()
