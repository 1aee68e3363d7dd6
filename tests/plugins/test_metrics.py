"""The metrics plugin: /metrics scraped and parsed as Prometheus text, through a real gateway."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.context import Outcome, Usage
from gateway.loader import load_data
from plugins.metrics import GatewayMetrics
from plugins.metrics_tally import DURATION_BUCKETS, TTFT_BUCKETS
from tests.conftest import MOCK_PROVIDER, make_config
from tests.stub_upstream import StubUpstream, start_stub, stub_provider

USER = [{"role": "user", "content": "hello world"}]
NAMES = {
    "llm_gateway_requests", "llm_gateway_request_duration_seconds", "llm_gateway_time_to_first_token_seconds",
    "llm_gateway_tokens", "llm_gateway_upstream_errors", "llm_gateway_streams_in_flight",
    "llm_gateway_rate_limited", "llm_gateway_cache_requests",
}


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {
            (s.name, frozenset(s.labels.items())): s.value for f in self.families.values() for s in f.samples
        }

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.samples if sample == name]


async def scrape(http: aiohttp.ClientSession, url: str) -> Scrape:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(await resp.text())


@pytest.fixture
async def stub() -> AsyncIterator[StubUpstream]:
    upstream = await start_stub()
    yield upstream
    await upstream.close()


async def test_success_counts_request_tokens_and_duration(gateway, http):
    gw = await gateway()
    async with http.post(gw.v1 + "/chat/completions", json={"model": "mock-1", "messages": USER}) as resp:
        assert resp.status == 200
    m = await scrape(http, gw.url)
    assert set(m.families) >= NAMES
    assert m.get("llm_gateway_requests_total", provider="mock", model="mock-1", operation="chat", status="200") == 1
    assert m.get("llm_gateway_tokens_total", provider="mock", model="mock-1", kind="prompt") == 2
    assert m.get("llm_gateway_tokens_total", provider="mock", model="mock-1", kind="completion") == 4
    assert m.get("llm_gateway_request_duration_seconds_count", provider="mock", operation="chat") == 1
    assert m.get("llm_gateway_time_to_first_token_seconds_count", provider="mock") is None  # not a stream
    assert m.get("llm_gateway_streams_in_flight", provider="mock") == 0


async def test_unknown_model_is_counted_as_404_without_its_name(gateway, http):
    gw = await gateway()
    name = "no-such-model-" + secrets.token_hex(8)
    async with http.post(gw.v1 + "/chat/completions", json={"model": name, "messages": USER}) as resp:
        assert resp.status == 404
    m = await scrape(http, gw.url)
    assert m.get("llm_gateway_requests_total", provider="none", model="other", operation="chat", status="404") == 1
    assert name not in m.text


async def test_a_model_outside_the_config_gets_the_bounded_label_other(gateway, http):
    gw = await gateway(make_config(models=[{"name": "smart", "targets": ["mock/mock-1"]}]))
    name = "free-text-" + secrets.token_hex(8)
    for model in ("mock/" + name, "smart", "mock-embed"):
        async with http.post(gw.v1 + "/chat/completions", json={"model": model, "messages": USER}) as resp:
            assert resp.status == 200
    m = await scrape(http, gw.url)
    models = {labels["model"] for labels in m.labels_of("llm_gateway_requests_total")}
    assert models == {"other", "mock-1", "mock-embed"}  # the alias is served by (and labelled as) mock-1
    assert name not in m.text


async def test_stream_observes_ttft_tokens_and_streams_in_flight(gateway, http):
    slow = {**MOCK_PROVIDER, "options": {"reply": "lorem", "chunk_delay_s": 0.05}}
    gw = await gateway(make_config(slow))
    body = {"model": "mock-1", "messages": USER, "stream": True, "max_tokens": 6,
            "stream_options": {"include_usage": True}}
    async with http.post(gw.v1 + "/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert (await resp.content.readline()).startswith(b"data: ")
        during = await scrape(http, gw.url)  # the rest of the stream is still on its way
        await resp.read()
    after = await scrape(http, gw.url)
    assert during.get("llm_gateway_streams_in_flight", provider="mock") == 1
    assert after.get("llm_gateway_streams_in_flight", provider="mock") == 0
    assert after.get("llm_gateway_time_to_first_token_seconds_count", provider="mock") == 1
    assert after.get("llm_gateway_tokens_total", provider="mock", model="mock-1", kind="completion") == 6
    assert after.get("llm_gateway_requests_total", provider="mock", model="mock-1", operation="chat",
                     status="200") == 1


async def test_upstream_errors_rate_limits_and_broken_streams_are_counted(gateway, http, stub):
    vend = stub_provider("vend", stub.url, "k-" + "x" * 20, ["status-500", "status-429", "midstream"])
    gw = await gateway(make_config(vend))
    for model, status in (("status-500", 502), ("status-429", 429)):
        async with http.post(gw.v1 + "/chat/completions", json={"model": model, "messages": USER}) as resp:
            assert resp.status == status
    body = {"model": "midstream", "messages": USER, "stream": True}
    async with http.post(gw.v1 + "/chat/completions", json=body) as resp:
        assert b'"error"' in await resp.read()
    m = await scrape(http, gw.url)
    assert m.get("llm_gateway_upstream_errors_total", provider="vend", type="upstream_error") == 2  # 500, stream
    assert m.get("llm_gateway_upstream_errors_total", provider="vend", type="rate_limit_error") == 1
    assert m.get("llm_gateway_rate_limited_total", scope="upstream") == 1
    assert m.get("llm_gateway_requests_total", provider="vend", model="status-500", operation="chat",
                 status="502") == 1
    assert m.get("llm_gateway_streams_in_flight", provider="vend") == 0


def test_gateway_rate_limits_and_cache_outcomes_use_fixed_label_words():
    metrics = GatewayMetrics(load_data(make_config(), {}).config)
    metrics.finished("chat", Outcome(429, error_type="rate_limit_error"))
    metrics.finished("chat", Outcome(200, provider="mock", model="mock-1", cache="hit"))
    metrics.finished("chat", Outcome(200, provider="mock", model="mock-1", cache="miss"))
    metrics.finished("chat", Outcome(200, provider="not-configured", model="mock-1", cache="surprise"))
    m = Scrape(generate_latest(metrics.registry).decode())
    assert m.get("llm_gateway_rate_limited_total", scope="gateway") == 1
    assert m.get("llm_gateway_cache_requests_total", outcome="hit") == 1
    assert m.get("llm_gateway_cache_requests_total", outcome="miss") == 1
    assert m.get("llm_gateway_cache_requests_total", outcome="other") == 1
    assert m.get("llm_gateway_requests_total", provider="other", model="mock-1", operation="chat",
                 status="200") == 1


def test_counts_wait_in_a_bounded_dict_until_the_registry_is_collected():
    metrics = GatewayMetrics(load_data(make_config(), {}).config)
    for _ in range(50):
        metrics.finished("chat", Outcome(200, provider="mock", model="mock-1", usage=Usage(2, 3), cache="miss"))
    assert len(metrics.tallies) == 1 and metrics.tallies.pending() == 1  # one tally per label set
    metrics.stream_opened("mock")
    metrics.stream_opened("mock")
    metrics.stream_closed("mock")
    for _ in range(2):  # a second collection must not count anything twice
        m = Scrape(generate_latest(metrics.registry).decode())
        assert m.get("llm_gateway_requests_total", provider="mock", model="mock-1", operation="chat",
                     status="200") == 50
        assert m.get("llm_gateway_tokens_total", provider="mock", model="mock-1", kind="prompt") == 100
        assert m.get("llm_gateway_tokens_total", provider="mock", model="mock-1", kind="completion") == 150
        assert m.get("llm_gateway_cache_requests_total", outcome="miss") == 50
        assert m.get("llm_gateway_request_duration_seconds_count", provider="mock", operation="chat") == 50
        assert m.get("llm_gateway_streams_in_flight", provider="mock") == 1
        assert metrics.tallies.pending() == 0


async def test_two_gateways_in_one_process_keep_their_own_registries(gateway, http):
    first, second = await gateway(), await gateway()
    async with http.post(first.v1 + "/chat/completions", json={"model": "mock-1", "messages": USER}) as resp:
        assert resp.status == 200
    one, two = await scrape(http, first.url), await scrape(http, second.url)
    labels = {"provider": "mock", "model": "mock-1", "operation": "chat", "status": "200"}
    assert one.get("llm_gateway_requests_total", **labels) == 1
    assert two.get("llm_gateway_requests_total", **labels) is None


async def test_metrics_needs_no_client_key(gateway, http):
    gw = await gateway(make_config(auth={"keys": [{"name": "a", "key": "gw-" + secrets.token_hex(12)}]}))
    await scrape(http, gw.url)


def test_tallied_histograms_expose_what_observe_would():
    """The tallies' buckets and sums, once flushed, are prometheus-client's own for the same values."""
    values = [0.0, 0.004, 0.01, 0.0100001, 0.3, 2.5, 7.0, 299.9, 300.0, 1e9]
    metrics = GatewayMetrics(load_data(make_config(), {}).config)
    reference = CollectorRegistry()
    duration = Histogram("llm_gateway_request_duration_seconds", "d", ("provider", "operation"),
                         buckets=DURATION_BUCKETS, registry=reference)
    ttft = Histogram("llm_gateway_time_to_first_token_seconds", "t", ("provider",),
                     buckets=TTFT_BUCKETS, registry=reference)
    for v in values:
        metrics.finished("chat", Outcome(200, provider="mock", model="mock-1", latency_s=v, ttft_s=v, stream=True))
        duration.labels("mock", "chat").observe(v)
        ttft.labels("mock").observe(v)
    for _ in range(2):  # a second collection adds nothing
        ours, theirs = (Scrape(generate_latest(r).decode()) for r in (metrics.registry, reference))
        for name in ("llm_gateway_request_duration_seconds", "llm_gateway_time_to_first_token_seconds"):
            mine = {k: v for k, v in ours.samples.items() if k[0].startswith(name) and not k[0].endswith("_created")}
            ref = {k: v for k, v in theirs.samples.items() if k[0].startswith(name) and not k[0].endswith("_created")}
            assert mine.keys() == ref.keys()
            for k, v in ref.items():
                assert mine[k] == pytest.approx(v), k
