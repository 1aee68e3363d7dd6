"""The anthropic adapter's response side: messages, stream events and errors.

Stream tests feed recorded event sequences (``fixtures/anthropic/*.json``) event by event, and
once through the core's SSE decoder in small byte slices.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from gateway.errors import (
    UpstreamOverloadedError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway.operations import CHAT, COMPLETIONS
from gateway.sse import SSEDecoder, SSEEvent
from tests.providers.anthropic_helpers import MODEL, fixture, make_adapter


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
