"""``GET /v1/models``: every provider's models (the vendor's listing where it has one, else the
configured list) plus the aliases, cached for a TTL."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway.registry import Provider, ProviderRegistry

log = logging.getLogger("llm_gateway.models")


class ModelCatalog:
    def __init__(self, registry: ProviderRegistry, aliases: tuple[str, ...], ttl_s: float) -> None:
        self._registry = registry
        self._aliases = aliases
        self._ttl = ttl_s
        self._cached: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def listing(self) -> dict[str, Any]:
        if self._cached is not None and time.monotonic() < self._expires:
            return self._cached
        async with self._lock:
            if self._cached is None or time.monotonic() >= self._expires:
                self._cached = await self._build()
                self._expires = time.monotonic() + self._ttl
        return self._cached

    async def _build(self) -> dict[str, Any]:
        providers = list(self._registry)
        lists = await asyncio.gather(*(self._provider_models(p) for p in providers))
        now = int(time.time())
        data = [
            {"id": f"{p.name}/{m}", "object": "model", "created": now, "owned_by": p.name}
            for p, models in zip(providers, lists, strict=True) for m in models
        ]
        data += [{"id": a, "object": "model", "created": now, "owned_by": "gateway"} for a in self._aliases]
        return {"object": "list", "data": data}

    @staticmethod
    async def _provider_models(provider: Provider) -> list[str]:
        configured = list(provider.config.models)
        req = provider.adapter.models_request()
        if req is None:
            return configured
        try:
            async with asyncio.timeout(provider.config.health_check.timeout_s):
                raw = await provider.transport.send(req)
            if raw.status >= 400:
                raise provider.adapter.parse_error(raw.status, raw.body, raw.headers)
            listed = provider.adapter.parse_models(orjson.loads(raw.body))
        except Exception as exc:  # a vendor listing failure must not break /v1/models
            log.warning("model listing for provider %s failed (%s); serving the configured list",
                        provider.name, type(exc).__name__)
            return configured
        return configured + [m for m in listed if m not in configured]
