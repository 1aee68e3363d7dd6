"""What the metrics plugin's label values may be, and its collector of configuration reloads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily

from gateway import GatewayError
from gateway.config import GatewayConfig


def error_types() -> frozenset[str]:
    """The ``type`` of every ``GatewayError`` class (an error built with another type counts as
    ``other``): a bounded set, taken from the taxonomy rather than copied from it."""
    found, todo = set(), [GatewayError]
    while todo:
        cls = todo.pop()
        found.add(cls.type)
        todo += cls.__subclasses__()
    return frozenset(found)


def configured_models(config: GatewayConfig) -> frozenset[str]:
    """Every model name the config itself spells: provider models, aliases and alias targets."""
    providers = {p.name for p in config.providers}
    names = {m for p in config.providers for m in p.models}
    for alias in config.models:
        names.add(alias.name)
        for target in alias.targets:
            prov, sep, rest = target.partition("/")
            names.add(rest if sep and prov in providers else target)
    return frozenset(names)


class ReloadCounts:
    """Configuration reloads by result, read from the core's counts when collected."""

    def __init__(self, results: Mapping[str, int]) -> None:
        self.results = results

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("llm_gateway_config_reloads", "Configuration reloads, by result.",
                                     labels=("result",))
        for result in ("ok", "failed"):
            family.add_metric((result,), self.results.get(result, 0))
        yield family
