"""Governance series on ``/metrics``, collected from the plugin's own tallies at scrape time (a
request adds to a dict; prometheus-client objects are touched only when scraped).

``llm_gateway_cost_usd_total{provider,model}``, ``llm_gateway_unpriced_requests_total{provider,model}``,
``llm_gateway_spend_records_buffered``, ``llm_gateway_spend_records_written_total``,
``llm_gateway_spend_records_dropped_total``, ``llm_gateway_governance_store_up``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from plugins.governance.accounting import Accounting
from plugins.governance.service import Governance

Label = Callable[[str | None], str]


class GovernanceCollector:
    def __init__(self, gov: Governance, accounting: Accounting, provider: Label, model: Label) -> None:
        self.gov = gov
        self.accounting = accounting
        self.provider = provider  # the metrics plugin's label bounding (unknown models -> "other")
        self.model = model

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        cost = CounterMetricFamily("llm_gateway_cost_usd", "Cost of served requests in USD, from vendor usage.",
                                   labels=("provider", "model"))
        for (provider, model), value in self.summed(self.accounting.cost).items():
            cost.add_metric([provider, model], value)
        yield cost
        unpriced = CounterMetricFamily("llm_gateway_unpriced_requests", "Requests whose model has no price.",
                                       labels=("provider", "model"))
        for (provider, model), value in self.summed(self.accounting.unpriced).items():
            unpriced.add_metric([provider, model], value)
        yield unpriced
        writer = self.gov.writer
        yield GaugeMetricFamily("llm_gateway_spend_records_buffered", "Spend records waiting for the store.",
                                value=writer.waiting)
        yield CounterMetricFamily("llm_gateway_spend_records_written", "Spend records written to the store.",
                                  value=writer.written)
        yield CounterMetricFamily("llm_gateway_spend_records_dropped",
                                  "Spend records dropped because the buffer was full.", value=writer.dropped)
        yield GaugeMetricFamily("llm_gateway_governance_store_up", "1 when the last store write succeeded.",
                                value=1.0 if writer.healthy and self.gov.store_open else 0.0)

    def summed(self, tally: dict[tuple[str, str], float] | dict[tuple[str, str], int]) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for (provider, model), value in list(tally.items()):
            label = (self.provider(provider), self.model(model))
            out[label] = out.get(label, 0.0) + value
        return out
