"""The OpenAI-compatible vendors end to end: the official ``openai`` SDK → a real gateway → the vendor
emulators (tests/emulators), one table row per vendor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from gateway import hookimpl
from gateway.context import Outcome
from gateway.health import check_provider
from tests.conftest import make_config
from tests.emulators.base import Fault

KEY = "test-key"
USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
AZURE_DEPLOYMENTS = {"dep-mini": "gpt-4o-mini-2024-07-18", "dep-embed": "text-embedding-3-small"}
AZURE_OPTIONS = {"deployments": {"gpt-4o-mini": "dep-mini", "text-embedding-3-small": "dep-embed"}}


@dataclass(frozen=True)
class Vendor:
    emu: str  # emulator flavour (also the "Hello from <emu>!" in replies)
    type: str
    chat: str
    embed: str | None = None  # None: the vendor has no embeddings
    tools: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    emu_opts: dict[str, Any] = field(default_factory=dict)
    asks_usage: bool = True  # the gateway sends stream_options.include_usage upstream


VENDORS = {
    "azure": Vendor("azure", "azure_openai", "gpt-4o-mini", "text-embedding-3-small", options=AZURE_OPTIONS,
                    emu_opts={"deployments": AZURE_DEPLOYMENTS}),
    "azure_v1": Vendor("azure", "azure_openai", "gpt-4o-mini", "text-embedding-3-small",
                       options={**AZURE_OPTIONS, "api_style": "v1"}, emu_opts={"deployments": AZURE_DEPLOYMENTS}),
    "perplexity": Vendor("perplexity", "perplexity", "sonar", tools=False, asks_usage=False),
    "grok": Vendor("grok", "grok", "grok-4", "grok-embed"),
    "blackbox": Vendor("blackbox", "blackbox", "blackboxai/openai/gpt-4o"),
    "openrouter": Vendor("openrouter", "openrouter", "openai/gpt-4o-mini", "openai/text-embedding-3-small",
                         options={"http_referer": "https://gw.example", "x_title": "llm-gateway tests"}),
}
ALL = list(VENDORS)
WITH_TOOLS = [k for k, v in VENDORS.items() if v.tools]
WITH_EMBEDDINGS = [k for k, v in VENDORS.items() if v.embed]
WITHOUT_EMBEDDINGS = [k for k, v in VENDORS.items() if not v.embed]


class OutcomeRecorder:
    """An inline plugin: every finished request's outcome (the gateway's own view of usage)."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    @hookimpl
    def gateway_request_finished(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


@dataclass
class Setup:
    vendor: Vendor
    emu: Any
    gw: Any
    client: openai.AsyncOpenAI
    recorder: OutcomeRecorder

    @property
    def sent(self) -> Any:
        return self.emu.state.last_request


@pytest.fixture
async def setup(gateway, emulator) -> AsyncIterator[Callable[..., Any]]:
    clients: list[openai.AsyncOpenAI] = []

    async def start(name: str, *, api_key: str = KEY, **provider: Any) -> Setup:
        vendor = VENDORS[name]
        emu = await emulator(vendor.emu, api_key=KEY, **vendor.emu_opts)
        models = [vendor.chat, *([vendor.embed] if vendor.embed else [])]
        cfg = {"name": name, "type": vendor.type, "base_url": emu.url, "api_key": api_key, "models": models,
               "options": vendor.options, "health_check": {"enabled": False}, "retry": {"attempts": 0}, **provider}
        gw = await gateway(make_config(cfg))
        recorder = OutcomeRecorder()
        gw.gw.pm.register(recorder)
        gw.gw.refresh_hooks()  # the gateway decides once which hooks have implementations
        client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0)
        clients.append(client)
        return Setup(vendor, emu, gw, client, recorder)

    yield start
    for client in clients:
        await client.close()


def hello(vendor: Vendor, said: str = "Weather in Paris?") -> str:
    return f"Hello from {vendor.emu}! You said: {said}"


# -- chat -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
async def test_chat_round_trip(setup, name: str) -> None:
    s = await setup(name)
    raw = await s.client.chat.completions.with_raw_response.create(model=s.vendor.chat, messages=USER)
    assert raw.headers["x-gateway-provider"] == name
    resp = raw.parse()
    msg = resp.choices[0].message
    assert msg.content == hello(s.vendor) and resp.choices[0].finish_reason == "stop"
    assert msg.tool_calls is None and resp.usage is not None and resp.usage.completion_tokens > 0
    assert s.recorder.outcomes[-1].usage.completion_tokens == resp.usage.completion_tokens


async def test_azure_classic_uses_deployment_path_api_version_and_api_key(setup) -> None:
    s = await setup("azure")
    resp = await s.client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert s.sent.path == "/openai/deployments/dep-mini/chat/completions"
    assert s.sent.query == {"api-version": "2024-10-21"}
    assert s.sent.headers["api-key"] == KEY and "authorization" not in s.sent.headers
    assert resp.model == "gpt-4o-mini-2024-07-18"  # Azure's model id passes through (docs/providers/azure_openai.md)
    assert resp.model_extra["prompt_filter_results"]  # Azure's annotations reach the client


async def test_azure_v1_sends_the_deployment_as_model(setup) -> None:
    s = await setup("azure_v1")
    await s.client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert s.sent.path == "/openai/v1/chat/completions" and s.sent.query == {}
    assert s.sent.json["model"] == "dep-mini" and s.sent.headers["api-key"] == KEY


async def test_perplexity_sources_reach_the_sdk(setup) -> None:
    s = await setup("perplexity")
    resp = await s.client.chat.completions.create(model="sonar", messages=USER)
    assert resp.model_extra["citations"] and resp.model_extra["search_results"][0]["url"].startswith("https://")
    assert resp.usage.model_extra["num_search_queries"] == 1
    stream = await s.client.chat.completions.create(model="sonar", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert all(c.model_extra["citations"] for c in chunks)
    assert all("message" not in (c.choices[0].model_extra or {}) for c in chunks)


async def test_grok_reasoning_content_passes_through(setup) -> None:
    s = await setup("grok")
    resp = await s.client.chat.completions.create(model="grok-4", messages=USER)
    assert resp.choices[0].message.model_extra["reasoning_content"].startswith("Thinking about")
    stream = await s.client.chat.completions.create(model="grok-4", messages=USER, stream=True)
    thoughts = [c.choices[0].delta.model_extra.get("reasoning_content") async for c in stream if c.choices]
    assert "".join(t for t in thoughts if t).startswith("Thinking about")


async def test_blackbox_none_strings_reach_the_sdk_as_null(setup) -> None:
    s = await setup("blackbox")
    resp = await s.client.chat.completions.create(model="blackboxai/openai/gpt-4o", messages=USER)
    assert resp.system_fingerprint is None and resp.choices[0].message.function_call is None
    assert resp.choices[0].model_extra["provider_specific_fields"] == {"native_finish_reason": "stop"}


async def test_openrouter_attribution_headers_and_native_finish_reason(setup) -> None:
    s = await setup("openrouter")
    resp = await s.client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert s.sent.headers["http-referer"] == "https://gw.example"
    assert s.sent.headers["x-title"] == "llm-gateway tests"
    assert resp.choices[0].model_extra["native_finish_reason"] == "stop"
    stream = await s.client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER, stream=True)
    finishes = [c.choices[0].model_extra.get("native_finish_reason") async for c in stream if c.choices]
    assert finishes[-1] == "stop"


async def test_openrouter_without_attribution_options_sends_no_such_headers(setup) -> None:
    s = await setup("openrouter", options={})
    await s.client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert "http-referer" not in s.sent.headers and "x-title" not in s.sent.headers


async def test_openrouter_models_come_from_its_listing(setup) -> None:
    s = await setup("openrouter")
    ids = [m.id async for m in s.client.models.list()]
    assert "openrouter/openai/gpt-4o-mini" in ids and "openrouter/anthropic/claude-sonnet-4.5" in ids


@pytest.mark.parametrize("name", ["perplexity", "blackbox", "azure"])
async def test_models_come_from_config_where_the_vendor_lists_none_that_route(setup, name: str) -> None:
    s = await setup(name)
    ids = [m.id async for m in s.client.models.list()]
    assert ids == [f"{name}/{m}" for m in (s.vendor.chat, s.vendor.embed) if m]
    assert s.emu.state.requests == []


# -- streams ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("name", ALL)
async def test_stream_usage_chunk_only_when_asked_but_usage_always_known(setup, name: str, include_usage: bool) -> None:
    s = await setup(name)
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await s.client.chat.completions.create(model=s.vendor.chat, messages=USER, stream=True, **extra)
    chunks = [c async for c in stream]
    content = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert text == hello(s.vendor) and content[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in content)  # never usage on content chunks (no double counting)
    usage_chunks = [c for c in chunks if not c.choices]
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0]
        assert usage_chunks[0].usage.completion_tokens > 0
    else:
        assert usage_chunks == []  # no usage chunk, and Azure's prompt-filter chunk never shows
    if s.vendor.asks_usage:
        assert s.sent.json["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in s.sent.json
    outcome = s.recorder.outcomes[-1]
    assert outcome.stream and outcome.usage is not None and outcome.usage.completion_tokens > 0


@pytest.mark.parametrize(("fault", "message"), [
    (Fault.no_terminal(), "ended before its final event"),  # a clean close, but no finish_reason seen
    (Fault.drop_mid_stream(after=2), "broke mid-response"),
])
async def test_perplexity_stream_ending_before_its_finish_is_an_sdk_error(setup, fault: Fault, message: str) -> None:
    s = await setup("perplexity")
    s.emu.state.script(fault)
    stream = await s.client.chat.completions.create(model="sonar", messages=USER, stream=True)
    with pytest.raises(openai.APIError, match=message):
        [c async for c in stream]


@pytest.mark.parametrize("name", ["openrouter", "grok", "azure"])
async def test_mid_stream_vendor_error_becomes_an_sse_error_event(setup, name: str) -> None:
    s = await setup(name)
    s.emu.state.script(Fault.stream_error(after=2, message="Provider disconnected unexpectedly"))
    stream = await s.client.chat.completions.create(model=s.vendor.chat, messages=USER, stream=True)
    seen: list[Any] = []
    with pytest.raises(openai.APIError, match="Provider disconnected unexpectedly"):
        async for c in stream:
            seen.append(c)
    assert seen  # the error came after content had been relayed


# -- tools ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WITH_TOOLS)
async def test_tool_call_round_trip(setup, name: str) -> None:
    s = await setup(name)
    model = s.vendor.chat
    first = await s.client.chat.completions.create(model=model, messages=USER, tools=[TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Weather in Paris?"}
    stream = await s.client.chat.completions.create(model=model, messages=USER, tools=[TOOL], stream=True)
    fragments = [tc.function.arguments or "" async for c in stream if c.choices
                 for tc in c.choices[0].delta.tool_calls or ()]
    assert json.loads("".join(fragments)) == {"city": "Weather in Paris?"}
    follow_up = [*USER, first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "21 C and sunny"}]
    final = await s.client.chat.completions.create(model=model, messages=follow_up, tools=[TOOL])
    assert final.choices[0].message.content == f"Hello from {s.vendor.emu}! Tool said: 21 C and sunny"


async def test_perplexity_rejects_tools_with_a_400_naming_the_field(setup) -> None:
    s = await setup("perplexity")
    with pytest.raises(openai.BadRequestError) as info:
        await s.client.chat.completions.create(model="sonar", messages=USER, tools=[TOOL])
    assert info.value.body["param"] == "tools" and "tools" in info.value.message
    assert s.emu.state.requests == []  # never reached the vendor


# -- embeddings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WITH_EMBEDDINGS)
async def test_embeddings(setup, name: str) -> None:
    s = await setup(name)
    resp = await s.client.embeddings.create(model=s.vendor.embed, input=["a", "b c"])
    assert [d.index for d in resp.data] == [0, 1] and len(resp.data[0].embedding) == 8
    assert resp.usage.prompt_tokens == 3


@pytest.mark.parametrize("name", WITHOUT_EMBEDDINGS)
async def test_embeddings_unsupported_is_a_400_naming_the_provider(setup, name: str) -> None:
    s = await setup(name)
    with pytest.raises(openai.BadRequestError) as info:
        await s.client.embeddings.create(model=s.vendor.chat, input="x")
    assert info.value.body["code"] == "unsupported_operation" and name in info.value.message


# -- errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", ["wrong key (401)", "403"])
@pytest.mark.parametrize("name", ALL)
async def test_a_vendor_refusing_the_gateways_key_is_a_502_not_the_clients_401(setup, name: str, refusal: str):
    s = await setup(name, api_key="wrong-key") if refusal.startswith("wrong") else await setup(name)
    if refusal == "403":
        s.emu.state.script(Fault.status(403, "Forbidden for this key"))
    with pytest.raises(openai.APIStatusError) as info:
        await s.client.chat.completions.create(model=s.vendor.chat, messages=USER)
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_auth_error"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", ALL)
async def test_upstream_429_keeps_retry_after(setup, name: str, stream: bool) -> None:
    s = await setup(name)
    s.emu.state.script(Fault.status(429, "Slow down please", retry_after=7))
    with pytest.raises(openai.RateLimitError) as info:
        await s.client.chat.completions.create(model=s.vendor.chat, messages=USER, stream=stream)
    assert info.value.response.headers["retry-after"] == "7"
    assert "Slow down please" in info.value.message and info.value.body["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("name", ALL)
async def test_upstream_400_passes_through_with_the_vendor_message(setup, name: str) -> None:
    s = await setup(name)
    s.emu.state.script(Fault.status(400, "Vendor says this request is wrong"))
    with pytest.raises(openai.BadRequestError) as info:
        await s.client.chat.completions.create(model=s.vendor.chat, messages=USER)
    assert info.value.body["message"] == f"{name}: Vendor says this request is wrong"
    assert info.value.body["type"] == "invalid_request_error"
    assert info.value.body["code"] is None or isinstance(info.value.body["code"], str)


async def test_azure_content_filter_and_missing_deployment_keep_their_codes(setup) -> None:
    s = await setup("azure")
    s.emu.state.script(Fault.status(400, "The response was filtered", error_type="content_filter"))
    with pytest.raises(openai.BadRequestError) as info:
        await s.client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert (info.value.body["code"], info.value.body["param"]) == ("content_filter", "prompt")
    with pytest.raises(openai.NotFoundError) as missing:
        await s.client.chat.completions.create(model="azure/no-such-deployment", messages=USER)
    assert missing.value.body["code"] == "DeploymentNotFound" and "deployment" in missing.value.message


async def test_openrouter_int_codes_and_moderation(setup) -> None:
    s = await setup("openrouter")
    s.emu.state.script(Fault.status(402, "Insufficient credits"))
    with pytest.raises(openai.APIStatusError) as info:
        await s.client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert info.value.status_code == 502 and "Insufficient credits" in info.value.message
    assert isinstance(info.value.body["code"], str)
    flagged = {"error": {"code": 403, "message": "Input was flagged", "metadata": {"reasons": ["violence"]}}}
    s.emu.state.script(Fault.status(403, body=flagged))
    with pytest.raises(openai.BadRequestError) as moderated:
        await s.client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert moderated.value.body["code"] == "content_filter"


@pytest.mark.parametrize(("name", "path", "query"), [
    ("azure", "/openai/models", {"api-version": "2024-10-21"}),
    ("azure_v1", "/openai/v1/models", {}),
    ("openrouter", "/api/v1/models", {}),
])
async def test_health_check_uses_a_token_free_listing(setup, name: str, path: str, query: dict) -> None:
    s = await setup(name)
    assert await check_provider(s.gw.gw.registry[name]) is True
    assert (s.sent.method, s.sent.path, s.sent.query) == ("GET", path, query)
    bad = await setup(name, api_key="wrong-key")
    assert await check_provider(bad.gw.gw.registry[name]) is (name == "openrouter")  # its listing is public
