"""The anthropic adapter's pure transforms: request, response, stream events and errors.

Stream tests feed recorded event sequences (``fixtures/anthropic/*.json``) event by event, and
once through the core's SSE decoder in small byte slices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from gateway.config import ProviderConfig
from gateway.errors import (
    InvalidRequestError,
    UnsupportedOperation,
    UpstreamOverloadedError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway.operations import CHAT, COMPLETIONS, EMBEDDINGS
from gateway.sse import SSEDecoder, SSEEvent
from plugins.providers.anthropic import AnthropicAdapter, AnthropicOptions

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_adapter(base_url: str | None = "http://emu", **options: Any) -> AnthropicAdapter:
    config = ProviderConfig(name="claude", type="anthropic", base_url=base_url, api_key="sk-ant-test")
    return AnthropicAdapter("claude", config, AnthropicOptions(**options))


def payload(body: dict[str, Any], op=CHAT, **options: Any) -> dict[str, Any]:
    return make_adapter(**options).build_request(op, body, MODEL).json


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": f"claude/{MODEL}", "messages": list(messages), **fields}


USER = {"role": "user", "content": "Weather in Paris?"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Get weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


# -- adapter ------------------------------------------------------------------------------------
def test_request_goes_to_messages_with_key_version_and_beta_headers():
    req = make_adapter(anthropic_version="2024-01-01", beta=["a-1", "b-2"]).build_request(CHAT, chat(USER), MODEL)
    assert (req.method, req.url) == ("POST", "http://emu/v1/messages")
    assert req.headers == {"x-api-key": "sk-ant-test", "anthropic-version": "2024-01-01", "anthropic-beta": "a-1,b-2"}


@pytest.mark.parametrize(("base_url", "url"), [
    (None, "https://api.anthropic.com/v1/messages"),
    ("http://emu/", "http://emu/v1/messages"),
    ("http://emu/v1", "http://emu/v1/messages"),
])
def test_base_url_is_the_host_root(base_url, url):
    req = make_adapter(base_url).build_request(CHAT, chat(USER), MODEL)
    assert req.url == url
    assert req.headers == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


def test_models_listing_is_the_health_request_and_parses_ids():
    adapter = make_adapter()
    req = adapter.models_request()
    assert (req.method, req.url) == ("GET", "http://emu/v1/models?limit=1000")
    assert req.headers["x-api-key"] == "sk-ant-test"
    assert adapter.health_request().url == req.url
    listing = {"data": [{"type": "model", "id": "claude-a"}, {"type": "model", "id": "claude-b"}], "has_more": False}
    assert adapter.parse_models(listing) == ["claude-a", "claude-b"]


def test_embeddings_are_unsupported_and_name_the_provider():
    adapter = make_adapter()
    assert adapter.operations == {"chat", "completions"}
    with pytest.raises(UnsupportedOperation, match="'claude'"):
        adapter.build_request(EMBEDDINGS, {"model": MODEL, "input": "x"}, MODEL)


@pytest.mark.parametrize("options", [{"unknown": 1}, {"default_max_tokens": 0}, {"max_tokens_by_model": {"m": -1}}])
def test_invalid_options_are_rejected(options):
    with pytest.raises(ValidationError):
        AnthropicOptions(**options)


# -- request: messages --------------------------------------------------------------------------
def test_system_and_developer_messages_move_to_top_level_system_in_order():
    body = payload(chat({"role": "system", "content": "Be brief."}, USER,
                        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]}))
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}]
    assert body["messages"] == [{"role": "user", "content": "Weather in Paris?"}]


def test_a_single_system_message_is_sent_as_a_string():
    body = payload(chat({"role": "system", "content": "Be brief."}, USER))
    assert body["system"] == "Be brief."
    assert "system" not in payload(chat(USER))


@pytest.mark.parametrize(("part", "block"), [
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
     {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}),
    ({"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
     {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
     {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
      "title": "a.pdf"}),
    ({"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}},
     {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}),
])
def test_user_content_parts_become_blocks(part, block):
    body = payload(chat({"role": "user", "content": [{"type": "text", "text": "Look:"}, part]}))
    assert body["messages"][0]["content"] == [{"type": "text", "text": "Look:"}, block]


@pytest.mark.parametrize(("part", "param"), [
    ({"type": "image_url", "image_url": {"url": "ftp://x/cat.png"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}, "messages[0].content[0].image_url.url"),
    ({"type": "file", "file": {"file_id": "file-123"}}, "messages[0].content[0].file.file_data"),
    ({"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}, "messages[0].content[0].type"),
])
def test_unsupported_content_parts_are_400_naming_the_part(part, param):
    with pytest.raises(InvalidRequestError) as info:
        payload(chat({"role": "user", "content": [part]}))
    assert info.value.status == 400 and info.value.param == param


def test_tool_round_trip_becomes_tool_use_then_merged_tool_results():
    second = {**CALL, "id": "call_2", "function": {"name": "get_time", "arguments": ""}}
    body = payload(chat(
        USER,
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL, second]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "user", "content": "Thanks, and tomorrow?"},
    ))
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
            {"type": "text", "text": "Thanks, and tomorrow?"},
        ]},
    ]


def test_consecutive_same_role_messages_merge_and_empty_turns_are_skipped():
    body = payload(chat(USER, {"role": "user", "content": "Also Rome."}, {"role": "assistant", "content": ""},
                        {"role": "assistant", "content": None, "tool_calls": []}))
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Weather in Paris?"}, {"type": "text", "text": "Also Rome."}]}]


@pytest.mark.parametrize(("arguments", "ok"), [('{"a": 1}', True), ({"a": 1}, True), ("{not json", False),
                                               ("[1, 2]", False), ("3", False)])
def test_tool_call_arguments_must_be_a_json_object(arguments, ok):
    msg = {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": arguments}}]}
    if ok:
        assert payload(chat(USER, msg))["messages"][1]["content"][0]["input"] == {"a": 1}
        return
    with pytest.raises(InvalidRequestError) as info:
        payload(chat(USER, msg))
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(("message", "param"), [
    ({"role": "tool", "content": "x"}, "messages[1].tool_call_id"),
    ({"role": "function", "name": "f", "content": "x"}, "messages[1].role"),
    ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
     "messages[1].content[0]"),
])
def test_malformed_messages_are_400_naming_the_field(message, param):
    with pytest.raises(InvalidRequestError) as info:
        payload(chat(USER, message))
    assert info.value.param == param


# -- request: parameters ------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"max_tokens": 4096}),
    ({"max_tokens": 100}, {"max_tokens": 100}),
    ({"max_tokens": 100, "max_completion_tokens": 50}, {"max_tokens": 50}),
    ({"temperature": 0.3, "top_p": 0.9}, {"max_tokens": 4096, "temperature": 0.3, "top_p": 0.9}),
    ({"temperature": 1.7}, {"max_tokens": 4096, "temperature": 1.0}),
    ({"stop": "END"}, {"max_tokens": 4096, "stop_sequences": ["END"]}),
    ({"stop": ["a", "b"]}, {"max_tokens": 4096, "stop_sequences": ["a", "b"]}),
    ({"user": "u-42"}, {"max_tokens": 4096, "metadata": {"user_id": "u-42"}}),
    ({"stream": True, "stream_options": {"include_usage": True}}, {"max_tokens": 4096, "stream": True}),
    ({"seed": 1, "logprobs": True, "top_logprobs": 2, "presence_penalty": 0.5, "frequency_penalty": 0.5,
      "logit_bias": {"1": 2}, "n": 1, "store": True, "metadata": {"k": "v"}, "reasoning_effort": "low",
      "service_tier": "auto"}, {"max_tokens": 4096}),
    ({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}},
     {"max_tokens": 4096, "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
])
def test_parameters_translate_or_drop(fields, expected):
    body = payload(chat(USER, **fields))
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == expected
    assert body["model"] == MODEL


def test_max_tokens_and_thinking_defaults_come_from_options():
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = payload(chat(USER), max_tokens_by_model={MODEL: 8192}, default_max_tokens=10, thinking=thinking)
    assert (body["max_tokens"], body["thinking"]) == (8192, thinking)
    assert payload(chat(USER), default_max_tokens=10)["max_tokens"] == 10
    own = {"type": "disabled"}
    assert payload(chat(USER, thinking=own), thinking=thinking)["thinking"] == own


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (None, None, None),
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
    ("auto", True, {"type": "auto"}),
])
def test_tools_and_tool_choice(choice, parallel, expected):
    fields = {k: v for k, v in (("tool_choice", choice), ("parallel_tool_calls", parallel)) if v is not None}
    body = payload(chat(USER, tools=[TOOL, {"type": "function", "function": {"name": "ping", "strict": True}}],
                        **fields))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Get weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert body.get("tool_choice") == expected


def test_tool_choice_without_tools_is_dropped():
    assert "tool_choice" not in payload(chat(USER, tool_choice="required", parallel_tool_calls=False))


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": "json_schema"}, "response_format.type"),
    ({"stop": 5}, "stop"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice"),
])
def test_unsupported_parameters_are_400_naming_the_param(fields, param):
    with pytest.raises(InvalidRequestError) as info:
        payload(chat(USER, **fields))
    assert (info.value.status, info.value.param) == (400, param)


def test_response_format_json_schema_uses_structured_outputs_and_json_object_an_instruction():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    body = payload(chat(USER, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = payload(chat({"role": "system", "content": "Be brief."}, USER, response_format={"type": "json_object"}))
    assert body["system"][0] == {"type": "text", "text": "Be brief."}
    assert "JSON object" in body["system"][1]["text"]
    assert "system" not in payload(chat(USER, response_format={"type": "text"}))


@pytest.mark.parametrize(("prompt", "fields", "param"), [
    ("Say hi", {}, None),
    (["Say hi"], {}, None),
    (["a", "b"], {}, "prompt"),
    ([1, 2, 3], {}, "prompt"),
    ("Say hi", {"echo": True}, "echo"),
    ("Say hi", {"suffix": "!"}, "suffix"),
    ("Say hi", {"best_of": 2}, "best_of"),
    ("Say hi", {"echo": False, "best_of": 1, "logprobs": 2, "max_tokens": 16}, None),
])
def test_completions_prompt_becomes_one_user_message(prompt, fields, param):
    body = {"model": MODEL, "prompt": prompt, **fields}
    if param is not None:
        with pytest.raises(InvalidRequestError) as info:
            payload(body, COMPLETIONS)
        assert info.value.param == param
        return
    sent = payload(body, COMPLETIONS)
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}]
    assert sent["max_tokens"] == fields.get("max_tokens", 4096)


# -- response -----------------------------------------------------------------------------------
def test_message_with_tool_use_becomes_chat_completion():
    out = make_adapter().parse_response(CHAT, fixture("message_tool_use.json"), MODEL)
    assert out["id"] == "msg_01XYZ" and out["object"] == "chat.completion"
    assert out["model"] == "claude-sonnet-4-5-20250929" and isinstance(out["created"], int)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": "Let me check.", "refusal": None, "tool_calls": [
        {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert out["usage"] == {"prompt_tokens": 412, "completion_tokens": 58, "total_tokens": 470,
                            "prompt_tokens_details": {"cached_tokens": 0}}


def test_text_is_joined_thinking_exposed_and_cache_tokens_counted_as_prompt():
    out = make_adapter().parse_response(CHAT, fixture("message_text_cached.json"), MODEL)
    message = out["choices"][0]["message"]
    assert message["content"] == "Hello there!"
    assert message["reasoning_content"] == "User greets."
    assert "tool_calls" not in message
    assert out["usage"] == {"prompt_tokens": 2110, "completion_tokens": 15, "total_tokens": 2125,
                            "prompt_tokens_details": {"cached_tokens": 2000}}


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("something_new", "stop"), (None, "stop"),
])
def test_stop_reason_maps_to_finish_reason(stop_reason, finish):
    msg = {"id": "m", "content": [], "stop_reason": stop_reason, "usage": {}}
    out = make_adapter().parse_response(CHAT, msg, MODEL)
    assert out["choices"][0]["finish_reason"] == finish
    assert out["choices"][0]["message"]["content"] == ""
    assert out["model"] == MODEL


def test_completions_response_is_text_completion():
    out = make_adapter().parse_response(COMPLETIONS, fixture("message_text_cached.json"), MODEL)
    assert out["object"] == "text_completion"
    assert out["choices"] == [{"text": "Hello there!", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert out["usage"]["total_tokens"] == 2125


@pytest.mark.parametrize("bad", [[], "text", {"content": "not a list"}])
def test_malformed_message_raises_a_shape_error(bad):
    with pytest.raises(ValueError):
        make_adapter().parse_response(CHAT, bad, MODEL)


# -- stream -------------------------------------------------------------------------------------
def feed_all(events: list[dict[str, Any]], op=CHAT, include_usage: bool = False):
    body = {"stream_options": {"include_usage": True}} if include_usage else {}
    translator = make_adapter().stream_translator(op, body, MODEL)
    chunks = []
    for ev in events:
        chunks += [c.obj for c in translator.feed(SSEEvent(orjson.dumps(ev["data"]), ev["event"]))]
    return translator, chunks


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def test_text_stream_with_thinking_and_usage_chunk():
    translator, chunks = feed_all(fixture("stream_text_cached.json"), include_usage=True)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"reasoning_content": "User greets."},
                              {"content": "Hello"}, {"content": " there!"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + ["stop"]
    assert {c["id"] for c in chunks} == {"msg_01XYZ"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"claude-sonnet-4-5-20250929"}
    usage = {"prompt_tokens": 2110, "completion_tokens": 15, "total_tokens": 2125,
             "prompt_tokens_details": {"cached_tokens": 2000}}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage
    assert translator.done and translator.usage == usage
    assert list(translator.finish()) == []


def test_usage_is_recorded_for_metrics_even_when_the_client_did_not_ask():
    translator, chunks = feed_all(fixture("stream_text_cached.json"))
    assert all(c["choices"] for c in chunks)
    assert translator.usage["completion_tokens"] == 15


def test_tool_use_stream_numbers_tool_calls_independently_of_blocks():
    translator, chunks = feed_all(fixture("stream_tool_use.json"))
    ds = deltas(chunks)
    assert ds[:3] == [{"role": "assistant", "content": ""}, {"content": "Let me "}, {"content": "check."}]
    calls = [d["tool_calls"][0] for d in ds if "tool_calls" in d]
    assert calls[0] == {"index": 0, "id": "toolu_01A", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert calls[3] == {"index": 1, "id": "toolu_01B", "type": "function",
                        "function": {"name": "get_time", "arguments": ""}}
    args: dict[int, str] = {}
    for call in calls:
        args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    assert {k: json.loads(v) for k, v in args.items()} == {0: {"city": "Paris"}, 1: {"tz": "CET"}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert translator.usage["completion_tokens"] == 58


def test_malformed_stream_options_mean_no_usage_chunk():
    translator = make_adapter().stream_translator(CHAT, {"stream_options": "yes"}, MODEL)
    assert translator.include_usage is False


def test_ping_and_unknown_events_yield_nothing():
    translator = make_adapter().stream_translator(CHAT, {}, MODEL)
    assert list(translator.feed(SSEEvent(b'{"type":"ping"}', "ping"))) == []
    assert list(translator.feed(SSEEvent(b'{"type":"future_event","x":1}', "future_event"))) == []


def test_stream_through_the_sse_decoder_in_small_slices():
    raw = b"".join(f"event: {e['event']}\r\ndata: {json.dumps(e['data'])}\r\n\r\n".encode()
                   for e in fixture("stream_tool_use.json"))
    translator = make_adapter().stream_translator(CHAT, {}, MODEL)
    decoder, chunks = SSEDecoder(), []
    for i in range(0, len(raw), 7):
        for event in decoder.feed(raw[i:i + 7]):
            chunks += [c.obj for c in translator.feed(event)]
    assert translator.done
    assert chunks == feed_all(fixture("stream_tool_use.json"))[1]


def test_completions_stream_yields_text_completion_chunks():
    _, chunks = feed_all(fixture("stream_text_cached.json"), COMPLETIONS, include_usage=True)
    assert [c["object"] for c in chunks] == ["text_completion"] * 4
    assert [(c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in chunks[:3]] == [
        ("Hello", None), (" there!", None), ("", "stop")]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 2125


def test_mid_stream_overloaded_error_raises_retryable_overloaded():
    events = fixture("stream_overloaded.json")
    translator, chunks = feed_all(events[:-1])
    assert deltas(chunks)[-1] == {"content": "Hel"}
    with pytest.raises(UpstreamOverloadedError) as info:
        list(translator.feed(SSEEvent(orjson.dumps(events[-1]["data"]), "error")))
    assert info.value.status == 503 and info.value.retryable and "Overloaded" in info.value.message


@pytest.mark.parametrize(("error", "status", "cls", "retryable"), [
    ({"type": "api_error", "message": "boom"}, 502, UpstreamStatusError, True),
    ({"type": "invalid_request_error", "message": "bad"}, 400, UpstreamStatusError, False),
    ({"type": "rate_limit_error", "message": "slow"}, 429, UpstreamStatusError, True),
    ({"type": "timeout_error", "message": "late"}, 504, UpstreamTimeoutError, True),
    ("garbage", 502, UpstreamStatusError, True),
])
def test_stream_error_event_types_pick_the_status(error, status, cls, retryable):
    translator = make_adapter().stream_translator(CHAT, {}, MODEL)
    with pytest.raises(cls) as info:
        list(translator.feed(SSEEvent(orjson.dumps({"type": "error", "error": error}), "error")))
    assert (info.value.status, info.value.retryable, info.value.provider) == (status, retryable, "claude")


def test_stream_without_message_stop_fails_at_finish():
    translator, _ = feed_all(fixture("stream_tool_use.json")[:-1])
    assert not translator.done
    with pytest.raises(UpstreamProtocolError):
        list(translator.finish())


# -- errors -------------------------------------------------------------------------------------
def anthropic_error(etype: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message, **extra},
                         "request_id": "req_1"})


RATE_HEADERS = CIMultiDict({"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0",
                            "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:00Z", "request-id": "req_1",
                            "content-type": "application/json"})


@pytest.mark.parametrize(("status", "body", "out_status", "code", "retryable"), [
    (400, anthropic_error("invalid_request_error", "max_tokens: Field required"), 400, "upstream_error", False),
    (401, anthropic_error("authentication_error", "invalid x-api-key"), 502, "upstream_auth_error", False),
    (403, anthropic_error("permission_error", "no access"), 502, "upstream_auth_error", False),
    (404, anthropic_error("not_found_error", "model: claude-x"), 404, "upstream_error", False),
    (413, b"<html>413 Request Entity Too Large</html>", 413, "upstream_error", False),
    (429, anthropic_error("rate_limit_error", "slow down"), 429, "rate_limit_exceeded", True),
    (500, anthropic_error("api_error", "oops"), 502, "upstream_error", True),
    (504, anthropic_error("timeout_error", "late"), 504, "upstream_timeout", True),
    (529, anthropic_error("overloaded_error", "Overloaded"), 503, "upstream_overloaded", True),
])
def test_http_errors_map_to_gateway_errors(status, body, out_status, code, retryable):
    err = make_adapter().parse_error(status, body, CIMultiDict({"content-type": "application/json"}))
    assert (err.status, err.code, err.retryable, err.provider) == (out_status, code, retryable, "claude")
    expected = json.loads(body)["error"]["message"] if body.startswith(b"{") else "non-JSON"
    assert expected in err.message and err.message.startswith("claude: ")


@pytest.mark.parametrize(("status", "etype"), [(429, "rate_limit_error"), (529, "overloaded_error")])
def test_rate_limit_headers_are_forwarded_and_others_are_not(status, etype):
    err = make_adapter().parse_error(status, anthropic_error(etype, "x"), RATE_HEADERS)
    assert err.headers == {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0",
                           "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:00Z"}


def test_spend_limit_429_is_not_retried():
    body = anthropic_error("rate_limit_error", "spend limit", details={"error_code": "enforced_spend_limit_reached"})
    err = make_adapter().parse_error(429, body, CIMultiDict())
    assert err.status == 429 and not err.retryable
