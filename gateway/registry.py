"""Provider registry: adapter types come from the ``llm_gateway.providers`` entry points; each
enabled ``providers[]`` entry becomes one ``Provider`` with one adapter and one transport."""

from __future__ import annotations

import logging
from collections.abc import Collection
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from gateway.adapter import ProviderAdapter
from gateway.resilience import CircuitBreaker, ProviderHealth
from gateway.transport import HttpTransport, Transport

if TYPE_CHECKING:
    from pydantic import BaseModel

    from gateway.config import GatewayConfig, ProviderConfig

ENTRY_POINT_GROUP = "llm_gateway.providers"
log = logging.getLogger("llm_gateway.registry")


def installed_adapters() -> dict[str, EntryPoint]:
    """Adapter types that are installed, by config ``type`` name (nothing is imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_adapter_class(type_name: str) -> type[ProviderAdapter]:
    eps = installed_adapters()
    if type_name not in eps:
        raise LookupError(f"no provider type {type_name!r}; installed: {', '.join(sorted(eps))}")
    cls = eps[type_name].load()
    if not (isinstance(cls, type) and issubclass(cls, ProviderAdapter)):
        raise TypeError(f"entry point {type_name!r} is not a ProviderAdapter subclass")
    return cls


class Provider:
    """A configured provider at run time: its adapter, transport and health state."""

    def __init__(self, config: ProviderConfig, adapter: ProviderAdapter, transport: Transport) -> None:
        self.name = config.name
        self.type = config.type
        self.config = config
        self.adapter = adapter
        self.transport = transport
        self.breaker = CircuitBreaker(config.circuit_breaker)
        self.health = ProviderHealth()
        self.in_flight = 0

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, type={self.type!r})"


def build_provider(config: ProviderConfig, options: BaseModel | None = None) -> Provider:
    cls = load_adapter_class(config.type)
    if options is None:
        options = cls.options_model.model_validate(config.options)
    adapter = cls(config.name, config, options)
    transport = adapter.create_transport() or HttpTransport(config.name, config)
    return Provider(config, adapter, transport)


class ProviderRegistry:
    """Every enabled provider, opened at start-up and closed at shutdown (app ``cleanup_ctx``).
    Built for a reload, it takes over each provider of ``previous`` whose config is unchanged
    (session, circuit and health included); the others are new."""

    def __init__(self, config: GatewayConfig, previous: ProviderRegistry | None = None) -> None:
        before = previous.providers if previous is not None else {}
        self.providers: dict[str, Provider] = {}
        self._fresh: list[Provider] = []  # built here, so opened here
        for p in config.providers:
            if not p.enabled:
                continue
            kept = before.get(p.name)
            if kept is not None and kept.config == p:
                self.providers[p.name] = kept
            else:
                self.providers[p.name] = provider = build_provider(p)
                self._fresh.append(provider)

    def __getitem__(self, name: str) -> Provider:
        return self.providers[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.providers.values())

    async def open(self) -> None:
        for provider in self._fresh:
            await provider.transport.open()
        self._fresh = []

    async def close(self, keep: Collection[int] = ()) -> None:
        """Close every provider's session, except those whose ``id`` is in ``keep`` (still
        used by another generation)."""
        for provider in self.providers.values():
            if id(provider) in keep:
                continue
            try:
                await provider.transport.close()
            except Exception:
                log.exception("closing provider %s failed", provider.name)
