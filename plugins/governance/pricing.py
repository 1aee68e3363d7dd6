"""What a request cost, in USD, from the usage its vendor reported.

Prices come from the ``genai-prices`` package's bundled data (no network: its hourly updater is
never started) and the ``pricing:`` section, which wins. The library resolves a model in about
150 µs; here each (provider, model) is resolved once per UTC day into plain per-token floats, so
pricing a request is a dict look-up and a few multiplications (about a microsecond). Above a
price tier (e.g. Anthropic's 200k-token long context) the library's own ``calc_price`` is used.

Cached input tokens are part of ``prompt_tokens`` (the OpenAI convention every adapter reports)
and are charged at the cached rate instead of the input rate. Reasoning tokens are part of
``completion_tokens`` and are charged as output. A model with no price costs ``None``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.context import Usage
from plugins.governance.settings import Price

log = logging.getLogger("llm_gateway.governance.pricing")
PER_MTOK = 1e-6
# Adapter type -> the price data's provider id, where the two differ or the type is ambiguous.
PRICE_PROVIDER = {"azure_openai": "azure", "grok": "x-ai"}
MISSING: Any = object()  # not resolved yet (None is a resolved "no price")


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token (and per request); ``tier_start``: input tokens above which the library
    prices the request itself."""

    input: float
    output: float
    cached_input: float
    per_request: float = 0.0
    tier_start: int | None = None
    model_ref: str = ""
    provider_id: str | None = None


def base(value: Any) -> tuple[float, int | None]:
    """A library price (``Decimal`` or ``TieredPrices``) per million tokens -> (USD per token,
    the first tier's start)."""
    if value is None:
        return 0.0, None
    if hasattr(value, "tiers"):
        return float(value.base) * PER_MTOK, (value.tiers[0].start if value.tiers else None)
    return float(value) * PER_MTOK, None


def from_override(price: Price) -> Rates:
    cached = price.input if price.cached_input is None else price.cached_input
    return Rates(price.input * PER_MTOK, price.output * PER_MTOK, cached * PER_MTOK, price.per_request)


def from_library(provider_type: str, model: str, when: dt.datetime) -> Rates | None:
    # Imported on first use: the price data is large, and a gateway that prices nothing (or only
    # from its pricing table) should not pay for loading it at start-up.
    from genai_prices import data_snapshot

    provider_id = PRICE_PROVIDER.get(provider_type, provider_type)
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    prices = info.get_prices(when)
    if prices.input_mtok is None and prices.output_mtok is None:
        return None
    inp, tier_in = base(prices.input_mtok)
    out, tier_out = base(prices.output_mtok)
    cached, _ = base(prices.cache_read_mtok)
    per_k = getattr(prices, "requests_kcount", None)
    tiers = [t for t in (tier_in, tier_out) if t is not None]
    return Rates(inp, out, cached if prices.cache_read_mtok is not None else inp,
                 float(per_k) / 1000 if per_k else 0.0, min(tiers) if tiers else None, model, provider_id)


class PriceBook:
    def __init__(self, overrides: dict[str, Price], provider_types: dict[str, str]) -> None:
        self.overrides = {name: from_override(price) for name, price in overrides.items()}
        self.provider_types = provider_types
        self._rates: dict[tuple[str, str], Rates | None] = {}
        self._day_start = self._day_end = 0.0  # the UTC day the resolved rates hold for

    def rates(self, provider: str, model: str) -> Rates | None:
        """The rates of ``model`` served by the configured provider named ``provider``."""
        key = (provider, model)
        try:
            return self._rates[key]
        except KeyError:
            pass
        found = self.overrides.get(f"{provider}/{model}")
        if found is None and provider in self.provider_types:
            found = from_library(self.provider_types[provider], model, dt.datetime.now(dt.UTC))
        self._rates[key] = found
        return found

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        return self.cost_of((provider, model), usage, time.time())

    def cost_of(self, key: tuple[str, str], usage: Usage, now: float) -> float | None:
        """``cost`` of ``key`` = (provider, model) at ``now``, the request path's form."""
        if not self._day_start <= now < self._day_end:  # prices carry start dates: resolve again each UTC day
            self._rates.clear()
            self._day_start = now - now % 86400
            self._day_end = self._day_start + 86400
        rates = self._rates.get(key, MISSING)
        if rates is MISSING:
            rates = self.rates(*key)
        if rates is None:
            return None
        prompt = usage.prompt_tokens
        if rates.tier_start is not None and prompt > rates.tier_start:
            return self.tiered(rates, usage)
        cached = usage.cached_tokens
        if cached > prompt:
            cached = prompt
        return (prompt - cached) * rates.input + cached * rates.cached_input + usage.completion_tokens * rates.output \
            + rates.per_request

    @staticmethod
    def tiered(rates: Rates, usage: Usage) -> float:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price

        cached = min(usage.cached_tokens, usage.prompt_tokens)
        priced: Any = calc_price(PriceUsage(input_tokens=usage.prompt_tokens, cache_read_tokens=cached,
                                            output_tokens=usage.completion_tokens),
                                 rates.model_ref, provider_id=rates.provider_id)
        return float(priced.total_price)
