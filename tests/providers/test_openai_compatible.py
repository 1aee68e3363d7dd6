"""The OpenAI-compatible vendor adapters as pure transforms: request building, response fix-ups,
stream chunk edits and error parsing, table-driven per vendor."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.adapter import Chunk, ProviderAdapter
from gateway.config import ProviderConfig
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    UnsupportedOperation,
    UpstreamError,
    UpstreamProtocolError,
)
from gateway.operations import CHAT, COMPLETIONS, EMBEDDINGS, Operation
from gateway.registry import load_adapter_class
from gateway.sse import SSEDecoder, SSEEvent

KEY = "sk-test-123"
MSGS = [{"role": "user", "content": "hi"}]


def adapter(type_: str, base_url: str | None = None, **options: Any) -> ProviderAdapter:
    cls = load_adapter_class(type_)
    config = ProviderConfig.model_validate(
        {"name": type_, "type": type_, "base_url": base_url, "api_key": KEY, "options": options})
    return cls(type_, config, cls.options_model.model_validate(options))


# -- requests ----------------------------------------------------------------------------------------------

REQUESTS = [
    # (type, base_url, options, op, model, expected url)
    ("openai", None, {}, CHAT, "gpt-4o-mini", "https://api.openai.com/v1/chat/completions"),
    ("azure_openai", "https://res.openai.azure.com", {"deployments": {"gpt-4o-mini": "dep-mini"}}, CHAT,
     "gpt-4o-mini", "https://res.openai.azure.com/openai/deployments/dep-mini/chat/completions?api-version=2024-10-21"),
    ("azure_openai", "https://res.openai.azure.com/", {"api_version": "2025-04-01-preview"}, EMBEDDINGS,
     "text-embedding-3-small",
     "https://res.openai.azure.com/openai/deployments/text-embedding-3-small/embeddings?api-version=2025-04-01-preview"),
    ("azure_openai", "https://res.openai.azure.com/openai", {}, COMPLETIONS, "inst",
     "https://res.openai.azure.com/openai/deployments/inst/completions?api-version=2024-10-21"),
    ("azure_openai", "https://res.openai.azure.com", {}, CHAT, "a/b",
     "https://res.openai.azure.com/openai/deployments/a%2Fb/chat/completions?api-version=2024-10-21"),
    ("azure_openai", "https://res.openai.azure.com", {"api_style": "v1", "deployments": {"m": "dep"}}, CHAT, "m",
     "https://res.openai.azure.com/openai/v1/chat/completions"),
    ("azure_openai", "https://res.openai.azure.com/openai/v1", {"api_style": "v1"}, EMBEDDINGS, "e",
     "https://res.openai.azure.com/openai/v1/embeddings"),
    ("perplexity", None, {}, CHAT, "sonar", "https://api.perplexity.ai/chat/completions"),
    ("grok", None, {}, CHAT, "grok-4", "https://api.x.ai/v1/chat/completions"),
    ("grok", None, {}, EMBEDDINGS, "e", "https://api.x.ai/v1/embeddings"),
    ("blackbox", None, {}, CHAT, "blackboxai/openai/gpt-4o", "https://api.blackbox.ai/chat/completions"),
    ("openrouter", None, {}, COMPLETIONS, "openai/gpt-4o-mini", "https://openrouter.ai/api/v1/completions"),
]


@pytest.mark.parametrize(("type_", "base", "options", "op", "model", "url"), REQUESTS)
def test_request_url(type_: str, base: str | None, options: dict, op: Operation, model: str, url: str) -> None:
    body = {"model": "whatever", "messages": MSGS, "prompt": "p", "input": "i"}
    assert adapter(type_, base, **options).build_request(op, body, model).url == url


@pytest.mark.parametrize(("type_", "options", "expected"), [
    ("openai", {"organization": "org-1"}, {"Authorization": f"Bearer {KEY}", "OpenAI-Organization": "org-1"}),
    ("azure_openai", {}, {"api-key": KEY}),
    ("azure_openai", {"api_style": "v1"}, {"api-key": KEY}),
    ("perplexity", {}, {"Authorization": f"Bearer {KEY}"}),
    ("grok", {"headers": {"x-extra": "1"}}, {"Authorization": f"Bearer {KEY}", "x-extra": "1"}),
    ("blackbox", {}, {"Authorization": f"Bearer {KEY}"}),
    ("openrouter", {}, {"Authorization": f"Bearer {KEY}"}),
    ("openrouter", {"http_referer": "https://gw.example", "x_title": "llm-gateway"},
     {"Authorization": f"Bearer {KEY}", "HTTP-Referer": "https://gw.example", "X-Title": "llm-gateway"}),
])
def test_request_headers(type_: str, options: dict, expected: dict) -> None:
    base = "https://res.openai.azure.com" if type_ == "azure_openai" else None
    assert adapter(type_, base, **options).build_request(CHAT, {"messages": MSGS}, "m").headers == expected


def test_openrouter_rejects_empty_attribution_headers() -> None:
    cls = load_adapter_class("openrouter")
    with pytest.raises(ValueError, match="http_referer"):
        cls.options_model.model_validate({"http_referer": ""})


STREAM_BODY = {"model": "alias", "messages": MSGS, "stream": True}


@pytest.mark.parametrize(("type_", "options", "model", "expected"), [
    # the gateway asks for usage wherever the vendor honours stream_options
    ("openai", {}, "gpt-4o-mini", {**STREAM_BODY, "model": "gpt-4o-mini", "stream_options": {"include_usage": True}}),
    ("grok", {}, "grok-4", {**STREAM_BODY, "model": "grok-4", "stream_options": {"include_usage": True}}),
    ("azure_openai", {"deployments": {"m": "dep"}}, "m",
     {**STREAM_BODY, "model": "dep", "stream_options": {"include_usage": True}}),
    ("azure_openai", {"api_version": "2024-02-01"}, "m", {**STREAM_BODY, "model": "m"}),  # too old for it
    ("azure_openai", {"api_style": "v1", "deployments": {"m": "dep"}}, "m",
     {**STREAM_BODY, "model": "dep", "stream_options": {"include_usage": True}}),
    ("perplexity", {}, "sonar", {**STREAM_BODY, "model": "sonar"}),  # usage comes anyway
])
def test_stream_body(type_: str, options: dict, model: str, expected: dict) -> None:
    base = "https://res.openai.azure.com" if type_ == "azure_openai" else None
    assert adapter(type_, base, **options).build_request(CHAT, dict(STREAM_BODY), model).json == expected


def test_perplexity_drops_sampling_hints_and_maps_max_completion_tokens() -> None:
    body = {"model": "x", "messages": MSGS, "stop": ["\n"], "seed": 1, "logit_bias": {"1": 2}, "n": 1,
            "tool_choice": "auto", "tools": [], "logprobs": False, "top_logprobs": 2, "stream_mode": "concise",
            "max_completion_tokens": 50, "search_recency_filter": "month", "return_images": True}
    sent = adapter("perplexity").build_request(CHAT, body, "sonar").json
    assert sent == {"model": "sonar", "messages": MSGS, "max_tokens": 50, "search_recency_filter": "month",
                    "return_images": True}


@pytest.mark.parametrize(("field", "value"), [
    ("tools", [{"type": "function", "function": {"name": "f"}}]),
    ("functions", [{"name": "f"}]),
    ("n", 2),
    ("logprobs", True),
])
def test_perplexity_rejects_fields_a_client_relies_on(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        adapter("perplexity").build_request(CHAT, {"messages": MSGS, field: value}, "sonar")
    assert (info.value.status, info.value.param) == (400, field)
    assert field in info.value.message


@pytest.mark.parametrize(("type_", "op"), [
    ("perplexity", COMPLETIONS), ("perplexity", EMBEDDINGS), ("blackbox", COMPLETIONS), ("blackbox", EMBEDDINGS),
])
def test_unsupported_operations_answer_400_naming_the_provider(type_: str, op: Operation) -> None:
    with pytest.raises(UnsupportedOperation) as info:
        adapter(type_).build_request(op, {"prompt": "x", "input": "x"}, "m")
    assert info.value.status == 400 and f"'{type_}'" in info.value.message


@pytest.mark.parametrize(("type_", "options", "models_url", "health_url"), [
    ("openai", {}, "https://api.openai.com/v1/models", "https://api.openai.com/v1/models"),
    ("grok", {}, "https://api.x.ai/v1/models", "https://api.x.ai/v1/models"),
    ("openrouter", {}, "https://openrouter.ai/api/v1/models", "https://openrouter.ai/api/v1/models"),
    ("perplexity", {}, None, None),
    ("blackbox", {}, None, None),
    ("azure_openai", {}, None, "https://res.openai.azure.com/openai/models?api-version=2024-10-21"),
    ("azure_openai", {"api_style": "v1"}, None, "https://res.openai.azure.com/openai/v1/models"),
])
def test_models_and_health_requests(type_: str, options: dict, models_url: str | None, health_url: str | None) -> None:
    base = "https://res.openai.azure.com" if type_ == "azure_openai" else None
    a = adapter(type_, base, **options)
    models, health = a.models_request(), a.health_request()
    assert (models.url if models else None, health.url if health else None) == (models_url, health_url)
    if health is not None:
        assert health.method == "GET" and KEY in "".join(health.headers.values())


# -- non-stream responses ------------------------------------------------------------------------------------

def test_blackbox_none_strings_become_null_but_a_none_answer_survives() -> None:
    payload = {
        "id": "gen-1", "object": "chat.completion", "system_fingerprint": "None", "provider": "OpenAI",
        "choices": [
            {"index": 0, "finish_reason": "stop", "provider_specific_fields": {"native_finish_reason": "stop"},
             "message": {"role": "assistant", "content": "None", "tool_calls": "None", "function_call": "None"}},
            {"index": 1, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "None", "function_call": "None",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}},
        ],
    }
    out = adapter("blackbox").parse_response(CHAT, payload, "m")
    assert out["system_fingerprint"] is None
    first, second = out["choices"][0]["message"], out["choices"][1]["message"]
    assert (first["content"], first["tool_calls"], first["function_call"]) == ("None", None, None)
    assert (second["content"], second["function_call"]) == (None, None)
    assert second["tool_calls"][0]["function"]["name"] == "f"
    assert out["choices"][0]["provider_specific_fields"] == {"native_finish_reason": "stop"}  # kept


@pytest.mark.parametrize("type_", ["perplexity", "azure_openai", "openrouter", "grok"])
def test_vendor_extras_in_responses_reach_the_client(type_: str) -> None:
    payload = {"id": "x", "object": "chat.completion", "model": "m", "choices": [],
               "citations": ["https://a"], "search_results": [{"url": "https://a"}], "images": [],
               "related_questions": ["q"], "prompt_filter_results": [], "provider": "P"}
    base = "https://res.openai.azure.com" if type_ == "azure_openai" else None
    assert adapter(type_, base).parse_response(CHAT, dict(payload), "m") == payload


# -- streams ----------------------------------------------------------------------------------------------

def chunk(choices: list | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": choices if choices is not None else [], **extra}


def delta(content: str | None = None, finish: str | None = None, **more: Any) -> list[dict[str, Any]]:
    d = {"content": content, **more} if content is not None else dict(more)
    return [{"index": 0, "delta": d, "finish_reason": finish}]


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def run(type_: str, events: list[Any], *, include_usage: bool, done: bool = True) -> tuple[list[Chunk], Any]:
    """Feed events (dicts are JSON-encoded with spaces, like Python vendors; bytes go as is)."""
    body = {"stream": True, "stream_options": {"include_usage": True}} if include_usage else {"stream": True}
    base = "https://res.openai.azure.com" if type_ == "azure_openai" else None
    translator = adapter(type_, base).stream_translator(CHAT, body, "m")
    out: list[Chunk] = []
    for ev in events:
        data = ev if isinstance(ev, bytes) else orjson.dumps(ev).replace(b'":', b'": ').replace(b",", b", ")
        out += translator.feed(SSEEvent(data))
    if done:
        out += translator.feed(SSEEvent(b"[DONE]"))
    out += translator.finish()
    return out, translator.usage


OPENAI_STREAM = [chunk(delta("Hel")), chunk(delta("lo")), chunk(delta(finish="stop")),
                 chunk([], usage=USAGE)]


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_passthrough_relays_bytes_and_usage_chunk_only_when_asked(include_usage: bool) -> None:
    raw = [orjson.dumps(c) for c in OPENAI_STREAM]
    out, usage = run("openai", raw, include_usage=include_usage)
    assert usage == USAGE  # the gateway always knows usage
    assert [c.data for c in out] == (raw if include_usage else raw[:3])


def test_azure_prompt_filter_chunk_is_dropped() -> None:
    head = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    body = [chunk(delta("Hi"), **{"x": 1}), chunk(delta(finish="stop"))]
    out, _ = run("azure_openai", [head, *body], include_usage=False)
    assert [c.obj for c in out] == body


@pytest.mark.parametrize("include_usage", [True, False])
def test_perplexity_chunks_lose_message_and_running_usage_but_keep_citations(include_usage: bool) -> None:
    extras = {"citations": ["https://a"], "search_results": [{"url": "https://a"}]}
    events = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": "A"}, "finish_reason": None,
                "message": {"role": "assistant", "content": "A"}}], usage={**USAGE, "completion_tokens": 1}, **extras),
        {**chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "AB"}}], usage=USAGE, **extras),
         "object": "chat.completion"},  # older streams label chunks like responses
    ]
    out, usage = run("perplexity", events, include_usage=include_usage, done=False)  # no [DONE]
    assert usage == USAGE
    content = [c.obj for c in out if c.obj["choices"]]
    assert len(content) == 2
    for obj in content:
        assert "message" not in obj["choices"][0] and "usage" not in obj
        assert obj["citations"] == ["https://a"] and obj["object"] == "chat.completion.chunk"
    tail = [c.obj for c in out if not c.obj["choices"]]
    assert tail == ([{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                      "choices": [], "usage": USAGE}] if include_usage else [])


def test_perplexity_stream_ending_before_a_finish_reason_is_an_error() -> None:
    events = [chunk(delta("A"), usage=USAGE)]
    with pytest.raises(UpstreamProtocolError):
        run("perplexity", events, include_usage=False, done=False)


def test_openai_stream_without_done_is_an_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        run("openai", OPENAI_STREAM, include_usage=False, done=False)


@pytest.mark.parametrize("include_usage", [True, False])
def test_grok_usage_on_the_finish_chunk_becomes_an_openai_usage_chunk(include_usage: bool) -> None:
    reasoning = orjson.dumps(chunk(delta(reasoning_content="thinking")))
    events = [chunk(delta("", role="assistant")), reasoning, chunk(delta("Hi")),
              chunk(delta(finish="stop"), usage=USAGE)]
    out, usage = run("grok", events, include_usage=include_usage)
    assert usage == USAGE
    assert out[1].data == reasoning  # reasoning_content untouched, not even re-encoded
    assert out[3].obj == chunk(delta(finish="stop"))  # usage cut from the finish chunk
    assert [c.obj for c in out[4:]] == ([chunk([], usage=USAGE)] if include_usage else [])


def test_blackbox_chunks_with_none_strings_are_fixed_and_others_untouched() -> None:
    clean = orjson.dumps(chunk(delta("Paris")))
    events = [chunk(delta("", role="assistant", tool_calls="None"), system_fingerprint="None"), clean,
              chunk(delta(finish="stop"), usage=USAGE)]
    out, _ = run("blackbox", events, include_usage=False)
    assert out[0].obj["choices"][0]["delta"]["tool_calls"] is None and out[0].obj["system_fingerprint"] is None
    assert out[1].data == clean


def test_openrouter_comments_are_skipped_and_mid_stream_error_raises() -> None:
    wire = (b": OPENROUTER PROCESSING\n\n" + b"data: " + orjson.dumps(chunk(delta("Hi"))) + b"\n\n"
            b": OPENROUTER PROCESSING\n\n" + b"data: " + orjson.dumps(chunk(
                [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], provider="openai",
                error={"code": "server_error", "message": "Provider disconnected unexpectedly"})) + b"\n\n")
    events = SSEDecoder().feed(wire)
    assert len(events) == 2
    translator = adapter("openrouter").stream_translator(CHAT, {"stream": True}, "m")
    assert [c.obj for c in translator.feed(events[0])] == [chunk(delta("Hi"))]
    with pytest.raises(UpstreamError) as info:
        translator.feed(events[1])
    assert "Provider disconnected unexpectedly" in info.value.message and info.value.code == "server_error"


def test_finish_reason_error_without_an_error_object_still_raises() -> None:
    translator = adapter("blackbox").stream_translator(CHAT, {"stream": True}, "m")
    with pytest.raises(UpstreamError):
        translator.feed(SSEEvent(orjson.dumps(chunk(delta(finish="error")))))


def test_openrouter_native_finish_reason_passes_through_unparsed() -> None:
    raw = orjson.dumps(chunk([{"index": 0, "delta": {}, "finish_reason": "stop", "native_finish_reason": "end_turn"}]))
    translator = adapter("openrouter").stream_translator(CHAT, {"stream": True}, "m")
    assert [c.data for c in translator.feed(SSEEvent(raw))] == [raw]


# -- errors -------------------------------------------------------------------------------------------------

HTML = b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
ERRORS = [
    # (type, upstream status, body, status, code, param, message fragment)
    ("azure_openai", 404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment does not exist."}},
     404, "DeploymentNotFound", None, "deployment does not exist"),
    ("azure_openai", 400, {"error": {"message": "The response was filtered", "type": None, "param": "prompt",
                                     "code": "content_filter", "status": 400,
                                     "innererror": {"code": "ResponsibleAIPolicyViolation"}}},
     400, "content_filter", "prompt", "was filtered"),
    ("azure_openai", 401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}},
     502, "upstream_auth_error", None, "Access denied"),
    ("azure_openai", 429, {"error": {"code": "429", "message": "exceeded token rate limit"}},
     429, "rate_limit_exceeded", None, "exceeded token rate limit"),
    ("openai", 400, {"error": {"message": "Invalid 'n'", "type": "invalid_request_error", "param": "n",
                               "code": "invalid_value"}}, 400, "invalid_value", "n", "Invalid 'n'"),
    ("openai", 401, {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}},
     502, "upstream_auth_error", None, "Incorrect API key"),
    ("perplexity", 401, {"error": {"message": "Invalid API key", "type": "authentication_error", "code": 401}},
     502, "upstream_auth_error", None, "Invalid API key"),
    ("perplexity", 400, {"error": {"message": "Invalid model 'x'", "type": "invalid_model", "code": 400}},
     400, "upstream_error", None, "Invalid model"),
    ("perplexity", 403, HTML, 502, "upstream_auth_error", None, "non-JSON"),
    ("grok", 400, {"code": "Client specified an invalid argument", "error": "Incorrect API key provided: xa***sf."},
     502, "upstream_auth_error", None, "Incorrect API key"),
    ("grok", 400, {"code": "Client specified an invalid argument",
                   "error": "This model's maximum prompt length is 131072"}, 400, "upstream_error", None, "131072"),
    ("grok", 429, {"code": 429, "error": "You ran out of credits."}, 429, "rate_limit_exceeded", None, "credits"),
    ("grok", 400, {"error": {"code": "invalid_argument", "message": "bad temperature"}},
     400, "invalid_argument", None, "bad temperature"),
    ("blackbox", 400, {"error": {"message": "bad", "type": "invalid_request_error", "param": "None", "code": "400"}},
     400, "upstream_error", None, "bad"),
    ("openrouter", 402, {"error": {"code": 402, "message": "Insufficient credits", "metadata": {}}},
     502, "upstream_error", None, "Insufficient credits"),
    ("openrouter", 403, {"error": {"code": 403, "message": "Input was flagged", "metadata": {
        "reasons": ["violence"], "flagged_input": "…", "provider_name": "x", "model_slug": "y"}}},
     400, "content_filter", None, "Input was flagged"),
    ("openrouter", 403, {"error": {"code": 403, "message": "Key disabled"}}, 502, "upstream_auth_error", None,
     "Key disabled"),
    ("openrouter", 502, HTML, 502, "upstream_error", None, "non-JSON"),
]


@pytest.mark.parametrize(("type_", "upstream", "body", "status", "code", "param", "fragment"), ERRORS)
def test_error_parsing(type_: str, upstream: int, body: Any, status: int, code: str, param: str | None,
                       fragment: str) -> None:
    base = "https://res.openai.azure.com" if type_ == "azure_openai" else None
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    err = adapter(type_, base).parse_error(upstream, raw, {"retry-after": "7", "x-secret": "no"})
    assert isinstance(err, GatewayError)
    env = err.to_envelope()["error"]
    assert (err.status, env["code"], env["param"]) == (status, code, param)
    assert fragment in env["message"] and env["message"].startswith(f"{type_}: ")
    assert err.headers == {"retry-after": "7"}  # rate-limit headers only
    assert isinstance(env["code"], str) and isinstance(env["type"], str)
