"""Prometheus metrics at ``GET /metrics`` (text exposition; no client key needed, like ``/health``).

Every app has its own ``CollectorRegistry`` (``app[METRICS]``), never the process-global one, so
several gateways in one process (tests, an embedding host) do not share or clash over series.

The metric names are fixed (dashboards use them)::

    llm_gateway_requests_total{provider,model,operation,status}        counter
    llm_gateway_request_duration_seconds{provider,operation}           histogram
    llm_gateway_time_to_first_token_seconds{provider}                  histogram (streams)
    llm_gateway_tokens_total{provider,model,kind}                      counter, kind=prompt|completion
    llm_gateway_upstream_errors_total{provider,type}                   counter
    llm_gateway_streams_in_flight{provider}                            gauge
    llm_gateway_rate_limited_total{scope}                              counter, scope=gateway|upstream
    llm_gateway_cache_requests_total{outcome}                          counter, outcome=hit|miss|bypass
    llm_gateway_circuit_panic_total{provider}                          counter
    llm_gateway_config_reloads_total{result}                           counter, result=ok|failed

Label values are bounded, so no client can grow the series count or put text into a label:
``provider`` is a configured provider name (``none`` before routing); ``model`` is a configured
model, alias or alias-target name, else ``other``; ``operation`` is the core's operation name;
``status`` the numeric HTTP status; ``type`` a type of the gateway's error taxonomy; ``scope`` and
``outcome`` fixed words. No label ever holds user input or a key.

Cost per request: one ``gateway_request_finished`` call; never per chunk. The per-request series
(requests, tokens, cache outcomes and both histograms) add up in plain Python tallies, one per
bounded label set, and reach their prometheus-client series whenever the registry is collected
(``/metrics``, ``generate_latest``): a collector registered first applies them
(``plugins.metrics_tally`` says why). Streams in flight are counted without wrapping the stream:
+1 in ``gateway_upstream_attempt_done`` when a stream attempt got its first chunk (at most once
per request), -1 in ``gateway_request_finished`` (which always runs, also on disconnect), keyed
by a stash entry so the gauge only ever goes down for a stream it counted; the count is a plain
integer the gauge reads when collected. Collection must happen on the event loop's thread (the
``/metrics`` handler does), not from another thread.

With ``--workers N`` the workers share their values and any of them answers a scrape with the sum
over all (``plugins.metrics_shared``): the pending counts and the open-stream counts are then
also written to the shared files every 0.5 s, not only when collected. One process (no
``PROMETHEUS_MULTIPROC_DIR``) keeps its own registry as described above.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway import GatewayError, Outcome, RequestContext, StashKey, UpstreamError, hookimpl
from gateway.config import GatewayConfig
from gateway.keys import GATEWAY, RELOADER
from gateway.plugin_manager import carry_over
from gateway.transport import Attempt
from plugins.metrics_labels import ReloadCounts, configured_models, error_types
from plugins.metrics_shared import PeriodicFlush, scrape_all_workers, shared_values
from plugins.metrics_tally import DURATION_BUCKETS, TTFT_BUCKETS, Children, FlushFirst, Tallies

__all__ = ["Children", "GatewayMetrics"]

NONE, OTHER = "none", "other"
CACHE_OUTCOMES = frozenset({"hit", "miss", "bypass"})

# The provider label of the stream this request counted in flight.
STREAM_OPEN: StashKey[str] = StashKey("metrics.stream_open")
# The last attempt error counted, so gateway_error does not count it again.
COUNTED_ERROR: StashKey[GatewayError] = StashKey("metrics.counted_error")


class GatewayMetrics:
    """One app's collectors and the label bounding rules. Kept over configuration reloads
    (counters never restart); ``bound`` follows each new config's names."""

    def __init__(self, config: GatewayConfig, reloads: Mapping[str, int] | None = None) -> None:
        self.registry = r = CollectorRegistry()
        r.register(FlushFirst(self))
        # Reloads are the same in every worker (each re-reads the file): not summed, but this
        # process's own counts, added to a --workers scrape (see process_only).
        self.reloads = ReloadCounts(reloads) if reloads is not None else None
        self.extra: dict[str, Any] = {}  # see process_collector
        self.flushed: dict[str, Any] = {}  # see flushed_with
        if self.reloads is not None:
            r.register(self.reloads)
        self.error_types = error_types()
        # The per-request series, added up in tallies until collected (plugins.metrics_tally).
        self.tallies = Tallies(
            Counter("llm_gateway_requests_total", "Requests handled, by final HTTP status.",
                    ("provider", "model", "operation", "status"), registry=r),
            Histogram("llm_gateway_request_duration_seconds", "Time from request received to last byte sent.",
                      ("provider", "operation"), buckets=DURATION_BUCKETS, registry=r),
            Histogram("llm_gateway_time_to_first_token_seconds",
                      "Time from request received to the first streamed chunk.",
                      ("provider",), buckets=TTFT_BUCKETS, registry=r),
            Counter("llm_gateway_tokens_total", "Tokens as reported in the usage of responses.",
                    ("provider", "model", "kind"), registry=r),
            Counter("llm_gateway_cache_requests_total", "Response cache look-ups by outcome.", ("outcome",),
                    registry=r))
        self.upstream_errors = Children(Counter(
            "llm_gateway_upstream_errors_total", "Failed upstream attempts (retries included) and mid-stream errors.",
            ("provider", "type"), registry=r))
        # livesum: with several workers, the sum over those alive.
        self.streams = Children(Gauge(
            "llm_gateway_streams_in_flight", "Streams being relayed from upstream now.", ("provider",), registry=r,
            multiprocess_mode="livesum"))
        self.rate_limited = Children(Counter(
            "llm_gateway_rate_limited_total", "Requests answered 429, by the gateway's limits or the vendor's.",
            ("scope",), registry=r))
        self.panics = Children(Counter(
            "llm_gateway_circuit_panic_total",
            "Requests sent to a provider with an open circuit because every target of their route was open.",
            ("provider",), registry=r))
        self.open_streams: dict[str, int] = {}
        # Values in files shared with the other workers: flushed on a timer, not only on collect.
        self.shared = shared_values()
        self.flusher = PeriodicFlush(self.flush) if self.shared else None
        self.bound(config)

    def bound(self, config: GatewayConfig) -> None:
        """Label values allowed under ``config`` (a reload may add or remove names)."""
        self.providers = frozenset(p.name for p in config.providers)
        self.models = configured_models(config)
        for name in self.providers - self.open_streams.keys():
            self.track_streams(name)  # 0 from the start, not missing until the first stream

    def process_collector(self, name: str, make: Callable[[], Any]) -> Any:
        """Another plugin's collector (read at scrape time), registered once for the process's
        life whatever the reloads, and in every scrape; with ``--workers`` it reports this
        process's values only (they are not in the shared files)."""
        collector = self.extra.get(name)
        if collector is None:
            collector = self.extra[name] = make()
            self.registry.register(collector)
        return collector

    def flushed_with(self, name: str, make: Callable[[CollectorRegistry], Any]) -> Any:
        """Another plugin's metrics kept in this registry (with ``--workers``, in the shared
        files, so summed over workers like the plugin's own): ``make(registry)`` runs once for the
        process's life whatever the reloads, and its result's ``flush()`` runs with every flush."""
        owner = self.flushed.get(name)
        if owner is None:
            owner = self.flushed[name] = make(self.registry)
        return owner

    def process_only(self) -> bytes:
        """The exposition of values kept in this process only (not in the shared files)."""
        collectors = [*([self.reloads] if self.reloads is not None else []), *self.extra.values()]
        if not collectors:
            return b""
        registry = CollectorRegistry()
        for collector in collectors:
            registry.register(collector)
        return generate_latest(registry)

    def track_streams(self, label: str) -> None:
        """Give ``label`` a gauge series that reads its count of open streams when collected."""
        self.open_streams[label] = 0
        if self.shared:
            self.streams[(label,)].set(0)  # written with every flush
        else:
            self.streams[(label,)].set_function(partial(self.open_streams.__getitem__, label))

    def stream_opened(self, label: str) -> None:
        if label not in self.open_streams:
            self.track_streams(label)
        self.open_streams[label] += 1

    def stream_closed(self, label: str) -> None:
        self.open_streams[label] -= 1

    def flush(self) -> None:
        self.tallies.flush()
        for owner in self.flushed.values():
            owner.flush()
        if self.shared:
            for label, count in self.open_streams.items():
                self.streams[(label,)].set(count)

    def provider(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self.providers else OTHER

    def model(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self.models else OTHER

    def upstream_error(self, provider: str | None, error: GatewayError) -> None:
        kind = error.type if error.type in self.error_types else OTHER
        self.upstream_errors[(self.provider(provider), kind)].inc()

    def finished(self, operation: str, outcome: Outcome) -> None:
        provider, model, cache = outcome.provider, outcome.model, outcome.cache
        # Bounded label values, as provider() and model() give them, without the calls.
        if provider not in self.providers:
            provider = NONE if provider is None else OTHER
        if model not in self.models:
            model = NONE if model is None else OTHER
        if cache is not None and cache not in CACHE_OUTCOMES:
            cache = OTHER
        tally = self.tallies[(provider, model, operation, outcome.status, cache)]
        tally.requests += 1
        latency, duration = outcome.latency_s, tally.duration  # duration.add(latency), without the call
        duration.counts[bisect_left(DURATION_BUCKETS, latency)] += 1
        duration.total += latency
        if outcome.ttft_s is not None:
            tally.ttft.add(outcome.ttft_s)
            tally.ttfts += 1
        usage = outcome.usage
        if usage is not None:
            tally.prompt += usage.prompt_tokens
            tally.completion += usage.completion_tokens
        if outcome.status == 429 and outcome.error_type == "rate_limit_error":
            # A request that reached a vendor was refused by the vendor; one that did not, by us.
            self.rate_limited[("upstream" if outcome.attempts else "gateway",)].inc()


METRICS: web.AppKey[GatewayMetrics] = web.AppKey("llm_gateway.metrics")


async def scrape(request: web.Request) -> web.Response:
    live = request.app.get(RELOADER)  # the current configuration's metrics (see docs/reload.md)
    metrics = (live.current.app.get(METRICS) if live and live.current.app else None) or request.app[METRICS]
    if metrics.shared:
        metrics.flush()  # this worker's counts are current; the others' at most a flush interval late
        body = await asyncio.get_running_loop().run_in_executor(None, scrape_all_workers)
        body += metrics.process_only()
    else:
        body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    live = app.get(RELOADER)
    # One set of counters for the process's life: carried over every configuration reload.
    metrics = carry_over(app, METRICS, "process",
                         lambda: GatewayMetrics(config, live.results if live is not None else None))
    assert metrics is not None
    metrics.bound(config)
    app[METRICS] = metrics
    app[GATEWAY].pm.register(RequestMetrics(metrics), name="metrics.requests")
    app.router.add_get("/metrics", scrape)  # a reload's app is never served: start-up's route stays


@hookimpl
def gateway_startup(app: web.Application) -> None:
    metrics = app.get(METRICS)
    if metrics is not None and metrics.flusher is not None:
        metrics.flusher.start()


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    metrics = app.get(METRICS)
    if metrics is not None and metrics.flusher is not None:
        await metrics.flusher.stop()


class RequestMetrics:
    """The per-request hooks, registered by ``gateway_configure`` with the app's metrics in hand:
    no look-up of them per request."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    @hookimpl
    def gateway_upstream_attempt_done(self, ctx: RequestContext, attempt: Attempt, error: GatewayError | None) -> None:
        metrics = self.metrics
        if attempt.panic:
            metrics.panics[(metrics.provider(attempt.provider),)].inc()
        if error is not None:
            ctx.stash[COUNTED_ERROR] = error
            metrics.upstream_error(attempt.provider, error)
        elif attempt.stream:
            label = metrics.provider(attempt.provider)
            metrics.stream_opened(label)
            ctx.stash[STREAM_OPEN] = label

    @hookimpl
    def gateway_error(self, ctx: RequestContext, error: GatewayError) -> None:
        # An upstream error not seen as an attempt's result: one that broke a stream already relaying.
        if isinstance(error, UpstreamError) and ctx.stash.get(COUNTED_ERROR) is not error:
            self.metrics.upstream_error(error.provider or ctx.provider, error)

    @hookimpl
    def gateway_request_finished(self, ctx: RequestContext, outcome: Outcome) -> None:
        stream = ctx.stash.get(STREAM_OPEN)
        if stream is not None:
            self.metrics.stream_closed(stream)
        self.metrics.finished(ctx.op.name if ctx.op is not None else NONE, outcome)
