"""Bounded in-memory per-second buffers for the dashboard, filled as each request ends.

Every buffer is a ring of ``WINDOW_S`` one-second slots, indexed by ``unix second % WINDOW_S``
and stamped with that second: a slot whose stamp is old is zeroed when its second comes round
again, so a request costs one index computation and a few additions to one ring (its
provider's, or the ring of requests no provider served), never a scan, and memory never grows.
Latency and time-to-first-token keep the last ``SAMPLES`` values per provider (a ``deque`` with
``maxlen``); percentiles and totals are computed when the page asks, not per request.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

WINDOW_S = 900  # 15 minutes
SAMPLES = 512
FIELDS = ("requests", "errors", "tokens", "cost")


class SecondRing:
    """Per-second sums of requests, errors, failures, tokens and cost over the last ``WINDOW_S``
    seconds. ``failed``: every answer of status 400 or more (what the totals count as errors);
    ``errors``: those that are a provider's fault, its 5xx and 429s (what its own row counts)."""

    __slots__ = ("cost", "errors", "failed", "requests", "stamps", "tokens")

    def __init__(self) -> None:
        self.stamps = [-1] * WINDOW_S
        self.requests = [0] * WINDOW_S
        self.errors = [0] * WINDOW_S
        self.failed = [0] * WINDOW_S
        self.tokens = [0] * WINDOW_S
        self.cost = [0.0] * WINDOW_S

    def add(self, second: int, status: int, tokens: int, cost: float) -> None:
        i = second % WINDOW_S
        if self.stamps[i] != second:  # this slot last held a second 15 minutes ago or more
            self.stamps[i] = second
            self.requests[i] = self.errors[i] = self.failed[i] = self.tokens[i] = 0
            self.cost[i] = 0.0
        self.requests[i] += 1
        if status >= 400:
            self.failed[i] += 1
            if status >= 500 or status == 429:
                self.errors[i] += 1
        self.tokens[i] += tokens
        self.cost[i] += cost

    def rows(self, now: int, errors: str = "errors") -> list[list[Any]]:
        """``[second, requests, errors, tokens, cost]`` for each second of the window with
        traffic; ``errors="failed"`` counts every failed answer as an error instead."""
        oldest = now - WINDOW_S
        counted = getattr(self, errors)
        return [[s, self.requests[i], counted[i], self.tokens[i], self.cost[i]]
                for i, s in enumerate(self.stamps) if s > oldest and self.requests[i]]


def total_rows(rings: list[SecondRing], now: int) -> list[list[Any]]:
    """Several rings' rows added up per second, every failed answer an error (the totals)."""
    merged: dict[int, list[Any]] = {}
    for ring in rings:
        for row in ring.rows(now, "failed"):
            found = merged.get(row[0])
            if found is None:
                merged[row[0]] = row
            else:
                for column in range(1, 5):
                    found[column] += row[column]
    return [merged[s] for s in sorted(merged)]


class ProviderStats:
    """One provider's live figures in this process."""

    __slots__ = ("last_error", "last_error_at", "latency", "ring", "streams", "ttft")

    def __init__(self) -> None:
        self.ring = SecondRing()
        self.latency: deque[float] = deque(maxlen=SAMPLES)
        self.ttft: deque[float] = deque(maxlen=SAMPLES)
        self.streams = 0
        self.last_error: str | None = None  # already scrubbed of secrets
        self.last_error_at: float | None = None

    def snapshot(self, now: int) -> dict[str, Any]:
        return {"rows": self.ring.rows(now), "latency": list(self.latency), "ttft": list(self.ttft),
                "streams": self.streams, "last_error": self.last_error, "last_error_at": self.last_error_at}


class LiveStats:
    """The whole process's buffers: one ``ProviderStats`` per provider name, and the requests
    that reached no provider. A request adds to one ring; the totals are added up when a page
    or a worker's snapshot asks for them."""

    def __init__(self) -> None:
        self.unserved = SecondRing()
        self.providers: dict[str, ProviderStats] = {}

    def provider(self, name: str) -> ProviderStats:
        stats = self.providers.get(name)
        if stats is None:
            stats = self.providers[name] = ProviderStats()
        return stats

    def snapshot(self, now: int) -> dict[str, Any]:
        rings = [self.unserved, *(p.ring for p in self.providers.values())]
        return {"rows": total_rows(rings, now),
                "providers": {name: p.snapshot(now) for name, p in self.providers.items()}}


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def per_second(rows: list[list[Any]], now: int, field: int) -> list[float]:
    """The window as ``WINDOW_S`` values of column ``field``, oldest first, zeros where idle;
    ``rows`` may hold the same second several times (one per worker): they add up."""
    out: list[float] = [0] * WINDOW_S
    first = now - WINDOW_S + 1
    for row in rows:
        offset = row[0] - first
        if 0 <= offset < WINDOW_S:
            out[offset] += row[field]
    return out


def per_minute(seconds: list[float]) -> list[float]:
    return [sum(seconds[i:i + 60]) for i in range(0, len(seconds), 60)]
