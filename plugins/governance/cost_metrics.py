"""Governance series on ``/metrics``.

``llm_gateway_cost_usd_total{provider,model}`` and ``llm_gateway_unpriced_requests_total{provider,model}``
are prometheus-client counters in the metrics plugin's registry (``CostCounters``): with
``serve --workers N`` their values live in the shared files, so any worker's scrape sums every
worker's cost. A request only adds to a dict (``Accounting.cost``/``unpriced``); the counters take
those sums whenever the metrics plugin flushes its own coalesced counters (before each collection,
and with workers every 0.5 s and at shutdown). Labels are bounded by the metrics plugin's rules.

``llm_gateway_spend_records_buffered``, ``llm_gateway_spend_records_written_total``,
``llm_gateway_spend_records_dropped_total`` and ``llm_gateway_governance_store_up`` describe this
process's spend writer and are read at scrape time (``GovernanceCollector``; per process).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from plugins.governance.accounting import Accounting
from plugins.governance.service import Governance
from plugins.metrics import Children

Label = Callable[[str | None], str]


class CostCounters:
    """The cost counters of the process: one for its life (made through the metrics plugin's
    ``flushed_with``), fed by the accounting of whichever configuration generation is serving."""

    def __init__(self, registry: CollectorRegistry, provider: Label, model: Label) -> None:
        self.cost = Children(Counter("llm_gateway_cost_usd", "Cost of served requests in USD, from vendor usage.",
                                     ("provider", "model"), registry=registry))
        self.unpriced = Children(Counter("llm_gateway_unpriced_requests", "Requests whose model has no price.",
                                         ("provider", "model"), registry=registry))
        self.provider = provider  # the metrics plugin's label bounding (unknown models -> "other")
        self.model = model
        # Sums since the last flush, shared by every generation's Accounting: a request that ends
        # on a retiring generation after a reload still counts.
        self.pending_cost: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.pending_unpriced: defaultdict[tuple[str, str], int] = defaultdict(int)

    def follow(self, accounting: Accounting) -> None:
        if accounting.cost is self.pending_cost:
            return
        for label, value in accounting.cost.items():
            self.pending_cost[label] += value
        for label, count in accounting.unpriced.items():
            self.pending_unpriced[label] += count
        accounting.cost, accounting.unpriced = self.pending_cost, self.pending_unpriced

    def flush(self) -> None:
        """On the event loop (as every flush of the metrics plugin): nothing adds meanwhile."""
        for pending, counter in ((self.pending_cost, self.cost), (self.pending_unpriced, self.unpriced)):
            if pending:
                items = list(pending.items())
                pending.clear()
                for (provider, model), value in items:
                    counter[(self.provider(provider), self.model(model))].inc(value)


class GovernanceCollector:
    def __init__(self, gov: Governance) -> None:
        self.gov = gov

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        writer = self.gov.writer
        yield GaugeMetricFamily("llm_gateway_spend_records_buffered", "Spend records waiting for the store.",
                                value=writer.waiting)
        yield CounterMetricFamily("llm_gateway_spend_records_written", "Spend records written to the store.",
                                  value=writer.written)
        yield CounterMetricFamily("llm_gateway_spend_records_dropped",
                                  "Spend records dropped because the buffer was full.", value=writer.dropped)
        yield GaugeMetricFamily("llm_gateway_governance_store_up", "1 when the last store write succeeded.",
                                value=1.0 if writer.healthy and self.gov.store_open else 0.0)
