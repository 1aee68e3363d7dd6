"""Prices for each vendor's current models, from the bundled data and the ``pricing:`` table."""

from __future__ import annotations

import random
import socket
import time

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from gateway.context import Usage
from plugins.governance.pricing import PRICE_PROVIDER, PriceBook
from plugins.governance.settings import Price

PROVIDERS = {"oai": "openai", "claude": "anthropic", "az": "azure_openai", "co": "cohere", "pplx": "perplexity",
             "xai": "grok", "bb": "blackbox", "or": "openrouter", "mock": "mock"}
BLACKBOX = {"bb/blackboxai/openai/gpt-4o": Price(input=2.5, output=10, cached_input=1.25)}

# provider, model, USD per million input / cached input / output tokens, USD per request (list prices).
TABLE = [
    ("oai", "gpt-4o-mini", 0.15, 0.075, 0.60, 0.0),
    ("claude", "claude-sonnet-4-5-20250929", 3.0, 0.30, 15.0, 0.0),
    ("az", "gpt-4o-mini", 0.15, 0.075, 0.60, 0.0),
    ("co", "command-a-03-2025", 2.5, 2.5, 10.0, 0.0),
    ("pplx", "sonar-pro", 3.0, 3.0, 15.0, 0.014),
    ("xai", "grok-4-0709", 3.0, 0.75, 15.0, 0.0),
    ("bb", "blackboxai/openai/gpt-4o", 2.5, 1.25, 10.0, 0.0),
    ("or", "anthropic/claude-sonnet-4.5", 3.0, 0.30, 15.0, 0.0),
]
USAGE = Usage(prompt_tokens=12_000, completion_tokens=800, cached_tokens=4_000)


@pytest.fixture
def book() -> PriceBook:
    return PriceBook(BLACKBOX, PROVIDERS)


@pytest.mark.parametrize(("provider", "model", "inp", "cached", "out", "per_request"), TABLE)
def test_each_vendors_current_model_is_priced_at_its_list_price(
    book: PriceBook, provider: str, model: str, inp: float, cached: float, out: float, per_request: float
) -> None:
    expected = (8_000 * inp + 4_000 * cached + 800 * out) / 1e6 + per_request
    assert book.cost(provider, model, USAGE) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("provider", "model"), [(p, m) for p, m, *_ in TABLE if p != "bb"])
def test_the_fast_path_agrees_with_the_library(book: PriceBook, provider: str, model: str) -> None:
    rng = random.Random(7)
    provider_id = PRICE_PROVIDER.get(PROVIDERS[provider], PROVIDERS[provider])
    for _ in range(100):
        prompt = rng.randrange(0, 150_000)
        usage = Usage(prompt, rng.randrange(0, 4000), rng.randrange(0, prompt + 1))
        lib = calc_price(PriceUsage(input_tokens=prompt, cache_read_tokens=usage.cached_tokens,
                                    output_tokens=usage.completion_tokens), model, provider_id=provider_id)
        assert book.cost(provider, model, usage) == pytest.approx(float(lib.total_price), rel=1e-9, abs=1e-12)


def test_above_a_price_tier_the_library_prices_the_request(book: PriceBook) -> None:
    usage = Usage(prompt_tokens=300_000, completion_tokens=1000, cached_tokens=0)
    lib = calc_price(PriceUsage(input_tokens=300_000, output_tokens=1000), "claude-sonnet-4-5-20250929",
                     provider_id="anthropic")
    assert book.cost("claude", "claude-sonnet-4-5-20250929", usage) == pytest.approx(float(lib.total_price))
    assert book.cost("claude", "claude-sonnet-4-5-20250929", usage) > 300_000 * 3.0 / 1e6  # the long-context rate


def test_an_override_wins_over_the_bundled_price() -> None:
    book = PriceBook({"oai/gpt-4o-mini": Price(input=1.0, output=2.0)}, PROVIDERS)
    assert book.cost("oai", "gpt-4o-mini", Usage(1000, 1000, 500)) == pytest.approx((1000 * 1.0 + 1000 * 2.0) / 1e6)


def test_a_model_without_a_price_costs_none(book: PriceBook) -> None:
    assert book.cost("mock", "mock-1", USAGE) is None
    assert book.cost("oai", "no-such-model-anywhere", USAGE) is None
    assert book.cost("unconfigured", "gpt-4o-mini", USAGE) is None


def test_pricing_needs_no_network_and_costs_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    book = PriceBook({}, PROVIDERS)
    assert book.cost("oai", "gpt-4o-mini", USAGE) is not None  # resolved from the bundled data
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        book.cost("oai", "gpt-4o-mini", USAGE)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 20e-6, f"{per_call * 1e6:.2f} µs per request"  # the library alone: ~150 µs
