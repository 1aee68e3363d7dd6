"""The metrics plugin's per-request counts, added up in plain Python until the registry is collected.

prometheus-client takes a lock and re-checks a series' labels on every ``inc`` and ``observe``
(a histogram's ``observe`` is five Python calls and two locks), which cost more than everything
else the plugin does per request. So a finished request adds to one ``Tally``: the counts of its
label set (provider, model, operation, status, cache outcome), one dict look-up and a few integer
additions; a latency goes into its bucket by ``bisect``. ``Tallies.flush`` hands what added up to
the prometheus-client series (requests, tokens, cache outcomes, both histograms) and starts
again; the plugin flushes before every collection of its registry. Label values are bounded
(configured names or fixed words), so the number of tallies is bounded too.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Flushable(Protocol):
    def flush(self) -> None: ...


class FlushFirst:
    """Registered before the metrics it serves, so every collection of the registry (a scrape)
    sees the counts of every request finished until then."""

    def __init__(self, metrics: Flushable) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # no series of its own

    def collect(self) -> list[Any]:
        self.metrics.flush()
        return []


class Children(dict[tuple[str, ...], Any]):
    """``metric.labels(*values)``, memoised: label sets are bounded, and ``labels()`` validates
    and takes a lock on every call."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, key: tuple[str, ...]) -> Any:
        child = self[key] = self.metric.labels(*key)
        return child


class Observations:
    """A histogram's observations since the last flush: a count per bucket (the last one +Inf,
    as prometheus-client's) and their sum. ``bisect_left`` finds the first bound >= the value:
    the bucket ``observe`` would count it in."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self, child: Any) -> None:
        """Into a prometheus-client histogram child: what ``observe`` does per value, per bucket.
        ``_buckets`` and ``_sum`` are its value holders (tests pin the exposition this gives)."""
        counts = self.counts
        for i, n in enumerate(counts):
            if n:
                child._buckets[i].inc(n)
                counts[i] = 0
        child._sum.inc(self.total)
        self.total = 0.0


class Tally:
    """One label set's requests since the last flush."""

    __slots__ = ("completion", "duration", "prompt", "requests", "ttft", "ttfts")

    def __init__(self) -> None:
        self.requests = 0
        self.prompt = 0
        self.completion = 0
        self.duration = Observations(DURATION_BUCKETS)
        self.ttft = Observations(TTFT_BUCKETS)
        self.ttfts = 0  # streams among the requests: the ttft series exists only once one was seen


class Tallies(dict[tuple[Any, ...], Tally]):
    """Tallies by (provider, model, operation, status, cache outcome), and the series they feed."""

    def __init__(self, requests: Counter, duration: Histogram, ttft: Histogram, tokens: Counter,
                 cache: Counter) -> None:
        super().__init__()
        self.requests = Children(requests)
        self.duration = Children(duration)
        self.ttft = Children(ttft)
        self.tokens = Children(tokens)
        self.cache = Children(cache)

    def __missing__(self, key: tuple[Any, ...]) -> Tally:
        tally = self[key] = Tally()
        return tally

    def flush(self) -> None:
        for (provider, model, operation, status, cache), t in self.items():
            if not t.requests:
                continue
            self.requests[(provider, model, operation, str(status))].inc(t.requests)
            if t.prompt > 0:
                self.tokens[(provider, model, "prompt")].inc(t.prompt)
            if t.completion > 0:
                self.tokens[(provider, model, "completion")].inc(t.completion)
            if cache is not None:
                self.cache[(cache,)].inc(t.requests)
            t.duration.flush(self.duration[(provider, operation)])
            if t.ttfts:
                t.ttft.flush(self.ttft[(provider,)])
            t.requests = t.prompt = t.completion = t.ttfts = 0

    def pending(self) -> int:
        """Label sets with counts not yet flushed."""
        return sum(1 for t in self.values() if t.requests)
