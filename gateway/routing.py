"""Model name → ordered targets. Built once at start-up into a lookup table.

Precedence: an alias from ``models:``; then ``provider/model`` where the text before the first
``/`` names a configured provider (the rest, which may contain ``/``, is the upstream model);
then a bare name looked up in the providers' ``models`` lists, first in file order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import ModelNotFoundError

if TYPE_CHECKING:
    from gateway.config import ModelAlias, ProviderConfig
    from gateway.registry import Provider


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    model: str  # the upstream model name

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


def split_target(name: str, providers: Iterable[str]) -> tuple[str, str] | None:
    prov, sep, rest = name.partition("/")
    if sep and rest and prov in providers:
        return prov, rest
    return None


def resolve_name(
    name: str, providers: Mapping[str, ProviderConfig], aliases: Mapping[str, ModelAlias]
) -> list[tuple[str, str]]:
    """Config-level resolution to (provider name, upstream model) pairs; [] when unknown."""
    if name in aliases:
        out: list[tuple[str, str]] = []
        for target in aliases[name].targets:
            out += resolve_name(target, providers, {})  # aliases do not nest
        return out
    split = split_target(name, providers)
    if split:
        return [split]
    for p in providers.values():
        if name in p.models:
            return [(p.name, name)]
    return []


class Router:
    def __init__(
        self, providers: Mapping[str, Provider], configs: Iterable[ProviderConfig], aliases: Iterable[ModelAlias]
    ) -> None:
        self._providers = providers
        enabled = {c.name: c for c in configs if c.name in providers}
        alias_map = {a.name: a for a in aliases}
        self._table: dict[str, tuple[Target, ...]] = {}
        names = list(alias_map)
        for c in enabled.values():
            names += c.models + [f"{c.name}/{m}" for m in c.models]
        for name in names:
            pairs = resolve_name(name, enabled, alias_map)
            if pairs and name not in self._table:
                self._table[name] = tuple(Target(providers[p], m) for p, m in pairs)
        self.aliases = tuple(alias_map)

    def resolve(self, model: str) -> tuple[Target, ...]:
        targets = self._table.get(model)
        if targets:
            return targets
        split = split_target(model, self._providers)
        if split:
            return (Target(self._providers[split[0]], split[1]),)
        raise ModelNotFoundError(
            f"The model '{model}' does not exist or is not served by this gateway", param="model"
        )
