"""The Cohere adapter's pure transforms: request, response, stream (event by event), embeddings, errors."""

from __future__ import annotations

import base64
import json
import logging
import struct
from typing import Any

import pytest

from gateway.config import ProviderConfig
from gateway.errors import InvalidRequestError, UpstreamError, UpstreamProtocolError, UpstreamTimeoutError
from gateway.operations import CHAT, COMPLETIONS, EMBEDDINGS
from gateway.sse import SSEDecoder
from plugins.providers.cohere import CohereAdapter, CohereOptions

USER = [{"role": "user", "content": "Hi"}]


def adapter(**options: Any) -> CohereAdapter:
    config = ProviderConfig(name="co", type="cohere", base_url="https://api.cohere.test/", api_key="sk-co")
    return CohereAdapter("co", config, CohereOptions(**options))


def chat_body(**extra: Any) -> dict[str, Any]:
    return adapter().build_request(CHAT, {"model": "co/m", "messages": USER, **extra}, "command-a").json


# -- request --------------------------------------------------------------------------------------------
def test_chat_request_url_headers_and_minimal_body():
    req = adapter(client_name="my-app").build_request(CHAT, {"model": "x", "messages": USER}, "command-a")
    assert (req.method, req.url) == ("POST", "https://api.cohere.test/v2/chat")
    assert req.headers == {"Authorization": "Bearer sk-co", "X-Client-Name": "my-app", "Accept": "application/json"}
    assert req.json == {"model": "command-a", "messages": USER, "stream": False}


def test_stream_request_asks_for_event_stream_and_drops_stream_options():
    req = adapter().build_request(CHAT, {"model": "x", "messages": USER, "stream": True,
                                         "stream_options": {"include_usage": True}}, "command-a")
    assert req.headers["Accept"] == "text/event-stream"
    assert req.json == {"model": "command-a", "messages": USER, "stream": True}


PARAMS = [
    ({"stop": "END"}, {"stop_sequences": ["END"]}),
    ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
    ({"top_p": 0.5}, {"p": 0.5}),
    ({"top_p": 1}, {"p": 0.99}),  # OpenAI's default is outside Cohere's 0.01..0.99
    ({"top_p": 0}, {"p": 0.01}),
    ({"temperature": 0.2, "seed": 7}, {"temperature": 0.2, "seed": 7}),
    ({"frequency_penalty": 0.1, "presence_penalty": 0.3}, {"frequency_penalty": 0.1, "presence_penalty": 0.3}),
    ({"max_tokens": 10}, {"max_tokens": 10}),
    ({"max_completion_tokens": 12, "max_tokens": 10}, {"max_tokens": 12}),
    ({"n": 1, "user": "u1", "logit_bias": {"1": 2}, "logprobs": True, "parallel_tool_calls": False}, {}),
    ({"response_format": {"type": "text"}}, {}),
    ({"response_format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True,
                                                                 "schema": {"type": "object"}}}},
     {"response_format": {"type": "json_object", "json_schema": {"type": "object"}}}),
    ({"k": 40, "documents": [{"data": {"t": "x"}}], "safety_mode": "OFF"},
     {"k": 40, "documents": [{"data": {"t": "x"}}], "safety_mode": "OFF"}),
]


@pytest.mark.parametrize(("given", "expected"), PARAMS)
def test_chat_parameters_are_translated(given, expected):
    body = chat_body(**given)
    assert {k: v for k, v in body.items() if k not in ("model", "messages", "stream")} == expected


def test_a_non_numeric_top_p_is_left_for_cohere_to_reject():
    assert chat_body(top_p="high")["p"] == "high"


@pytest.mark.parametrize("base_url", ["https://api.cohere.test", "https://api.cohere.test/v2/",
                                      "https://api.cohere.test/v1"])
def test_a_version_suffix_on_base_url_is_dropped(base_url):
    config = ProviderConfig(name="co", type="cohere", base_url=base_url, api_key="k")
    req = CohereAdapter("co", config, CohereOptions()).build_request(CHAT, {"messages": USER}, "m")
    assert req.url == "https://api.cohere.test/v2/chat"


def test_dropped_parameters_are_logged_at_debug(caplog):
    with caplog.at_level(logging.DEBUG, "llm_gateway.providers.cohere"):
        chat_body(user="u1", logit_bias={"1": 2})
    assert "'logit_bias'" in caplog.text and "'user'" in caplog.text


def test_safety_mode_option_is_sent_and_a_request_value_wins():
    a = adapter(safety_mode="STRICT")
    assert a.build_request(CHAT, {"messages": USER}, "m").json["safety_mode"] == "STRICT"
    assert a.build_request(CHAT, {"messages": USER, "safety_mode": "OFF"}, "m").json["safety_mode"] == "OFF"


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
TOOL_CHOICES = [
    (None, {"tools": TOOLS}),
    ("auto", {"tools": TOOLS}),
    ("required", {"tools": TOOLS, "tool_choice": "REQUIRED"}),
    ("none", {"tools": TOOLS, "tool_choice": "NONE"}),
    ({"type": "function", "function": {"name": "get_time"}}, {"tools": [TOOLS[1]], "tool_choice": "REQUIRED"}),
]


@pytest.mark.parametrize(("choice", "expected"), TOOL_CHOICES)
def test_tool_choice_mapping(choice, expected):
    body = chat_body(tools=TOOLS, **({"tool_choice": choice} if choice else {}))
    assert {k: body[k] for k in ("tools", "tool_choice") if k in body} == expected


def test_tool_choice_none_without_tools_is_omitted():
    assert "tool_choice" not in chat_body(tool_choice="none")


REJECTED = [
    ({"n": 2}, "n"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
     "messages[0].content[0].type"),
    ({"stop": 5}, "stop"),
    ({"messages": [*USER, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": ["x"]}]}, "messages[1].tool_calls"),
]


@pytest.mark.parametrize(("given", "param"), REJECTED)
def test_untranslatable_requests_get_400_naming_the_field(given, param):
    with pytest.raises(InvalidRequestError) as exc:
        chat_body(**given)
    assert exc.value.status == 400 and exc.value.param == param


def test_messages_of_every_role_are_translated():
    call = {"id": "call_1", "type": "function", "index": 0,
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {"role": "user", "name": "bob", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [call], "tool_plan": "I will look it up."},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21 degrees."},
        {"role": "user", "content": "Thanks"},
    ]
    assert chat_body(messages=messages)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use metric."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}}]},
        {"role": "assistant", "tool_plan": "I will look it up.", "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21 degrees."},
        {"role": "user", "content": "Thanks"},
    ]


def test_tool_call_arguments_given_as_an_object_are_serialised():
    msg = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                "function": {"name": "f", "arguments": {"a": 1}}}]}
    sent = chat_body(messages=[*USER, msg])["messages"][1]
    assert sent["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


# -- response -------------------------------------------------------------------------------------------
def cohere_reply(finish: str = "COMPLETE", **message: Any) -> dict[str, Any]:
    return {"id": "c14c", "finish_reason": finish,
            "message": {"role": "assistant", **message},
            "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2},
                      "tokens": {"input_tokens": 71, "output_tokens": 3}}}


def test_chat_response_joins_text_parts_and_maps_usage():
    payload = cohere_reply(content=[{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hel"},
                                    {"type": "text", "text": "lo!"}])
    out = adapter().parse_response(CHAT, payload, "command-a")
    assert out["id"] == "c14c" and out["object"] == "chat.completion" and out["model"] == "command-a"
    assert isinstance(out["created"], int)
    message = {"role": "assistant", "content": "Hello!", "reasoning_content": "hmm"}
    assert out["choices"] == [{"index": 0, "message": message,
                               "finish_reason": "stop", "logprobs": None}]
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_usage_source_tokens_reports_raw_counts():
    out = adapter(usage_source="tokens").parse_response(CHAT, cohere_reply(content=[]), "m")
    assert out["usage"] == {"prompt_tokens": 71, "completion_tokens": 3, "total_tokens": 74}


def test_tool_call_response_keeps_calls_and_plan():
    call = {"id": "get_weather_x1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    out = adapter().parse_response(CHAT, cohere_reply("TOOL_CALL", tool_plan="I will look.", tool_calls=[call]), "m")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [call],
                                 "tool_plan": "I will look."}


FINISH = [("COMPLETE", "stop"), ("complete", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"),
          ("max_tokens", "length"), ("TOOL_CALL", "tool_calls"), ("content_blocked", "content_filter"),
          ("SOMETHING_NEW", "stop")]


@pytest.mark.parametrize(("reason", "expected"), FINISH)
def test_finish_reasons_map_case_insensitively(reason, expected):
    out = adapter().parse_response(CHAT, cohere_reply(reason, content=[]), "m")
    assert out["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize(("reason", "error"), [("ERROR", UpstreamError), ("error_limit", UpstreamError),
                                               ("TIMEOUT", UpstreamTimeoutError)])
def test_failed_generation_becomes_an_upstream_error(reason, error):
    with pytest.raises(error) as exc:
        adapter().parse_response(CHAT, {**cohere_reply(reason, content=[]), "error": "model crashed"}, "m")
    assert exc.value.status in (502, 504) and exc.value.retryable


def test_legacy_completion_goes_through_chat_and_comes_back_as_text_completion():
    a = adapter()
    req = a.build_request(COMPLETIONS, {"model": "x", "prompt": ["Say hi"], "max_tokens": 5, "echo": False}, "m")
    assert req.url.endswith("/v2/chat")
    assert req.json == {"model": "m", "messages": [{"role": "user", "content": "Say hi"}], "stream": False,
                        "max_tokens": 5}
    out = a.parse_response(COMPLETIONS, cohere_reply("MAX_TOKENS", content=[{"type": "text", "text": "Hi"}]), "m")
    assert out["object"] == "text_completion"
    assert out["choices"] == [{"index": 0, "text": "Hi", "logprobs": None, "finish_reason": "length"}]
    assert out["usage"]["total_tokens"] == 7


@pytest.mark.parametrize(("given", "param"), [({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [1, 2]}, "prompt"),
                                              ({"prompt": "a", "echo": True}, "echo"),
                                              ({"prompt": "a", "suffix": "z"}, "suffix"),
                                              ({"prompt": "a", "best_of": 3}, "best_of")])
def test_untranslatable_completions_get_400(given, param):
    with pytest.raises(InvalidRequestError) as exc:
        adapter().build_request(COMPLETIONS, {"model": "x", **given}, "m")
    assert exc.value.param == param


# -- stream ---------------------------------------------------------------------------------------------
def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


START = {"id": "c14c", "type": "message-start",
         "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": []}}}
USAGE = {"billed_units": {"input_tokens": 5, "output_tokens": 2}, "tokens": {"input_tokens": 71, "output_tokens": 3}}


def text_delta(text: str) -> dict[str, Any]:
    return {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}}


def end(reason: str = "COMPLETE", **delta: Any) -> dict[str, Any]:
    return {"type": "message-end", "delta": {"finish_reason": reason, "usage": USAGE, **delta}}


def run(translator: Any, raw: bytes) -> list[list[dict[str, Any]]]:
    """Feed a transcript event by event (through the real SSE decoder); chunks per event."""
    decoder = SSEDecoder()
    return [[c.obj for c in translator.feed(ev)] for ev in decoder.feed(raw) + decoder.flush()]


def translator(op: Any = CHAT, **body: Any) -> Any:
    return adapter().stream_translator(op, {"model": "x", **body}, "command-a")


def test_text_stream_translates_event_by_event():
    t = translator(stream_options={"include_usage": True})
    raw = sse(START, {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text"}}}},
              text_delta("Hel"), text_delta("lo!"), {"type": "content-end", "index": 0}, end())
    out = run(t, raw)
    assert [len(chunks) for chunks in out] == [1, 0, 1, 1, 0, 2]
    role, hel, lo, (final, usage) = out[0][0], out[2][0], out[3][0], out[5]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {role["id"], role["object"], role["model"]} == {"c14c", "chat.completion.chunk", "command-a"}
    assert [hel["choices"][0]["delta"], lo["choices"][0]["delta"]] == [{"content": "Hel"}, {"content": "lo!"}]
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 2,
                                                         "total_tokens": 7}
    assert t.done and t.usage == usage["usage"]
    assert list(t.finish()) == []


def test_usage_is_recorded_for_metrics_even_when_the_client_did_not_ask():
    t = translator(stream_options="yes please")  # malformed: treated as not asked
    out = run(t, sse(START, text_delta("x"), end("MAX_TOKENS")))
    assert out[-1][-1]["choices"][0]["finish_reason"] == "length" and len(out[-1]) == 1
    assert t.usage == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_tool_call_stream_emits_openai_tool_call_deltas():
    call = {"id": "get_weather_x1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    raw = sse(START, {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}},
              {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}},
              *({"type": "tool-call-delta", "index": 0,
                 "delta": {"message": {"tool_calls": {"function": {"arguments": f}}}}} for f in ('{"ci', 'ty":"P"}')),
              {"type": "tool-call-end", "index": 0}, end("TOOL_CALL"))
    deltas = [c["choices"][0]["delta"] for chunks in run(translator(), raw) for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"tool_plan": "I will"},
        {"tool_calls": [{"index": 0, "id": "get_weather_x1", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"P"}'}}]},
        {},
    ]


def test_thinking_deltas_become_reasoning_content():
    thinking = {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": "Let me see"}}}}
    out = run(translator(), sse(START, thinking, text_delta("Hi"), end()))
    assert [c["choices"][0]["delta"] for c in out[1] + out[2]] == [{"reasoning_content": "Let me see"},
                                                                   {"content": "Hi"}]


def test_unknown_events_and_a_stray_done_are_ignored():
    t = translator()
    decoder = SSEDecoder()
    events = decoder.feed(sse(START, {"type": "citation-start", "index": 0}, {"type": "brand-new"}) +
                          b"data: [DONE]\n\n")
    assert [len(list(t.feed(ev))) for ev in events] == [1, 0, 0, 0]


def test_stream_error_at_message_end_raises_with_cohere_message_and_keeps_usage():
    t = translator()
    decoder = SSEDecoder()
    start, bad = decoder.feed(sse(START, end("ERROR", error="internal failure, please retry")))
    list(t.feed(start))
    with pytest.raises(UpstreamError, match="internal failure, please retry"):
        t.feed(bad)
    assert t.usage is not None


def test_stream_that_ends_without_message_end_is_a_protocol_error():
    t = translator()
    run(t, sse(START, text_delta("partial")))
    with pytest.raises(UpstreamProtocolError):
        list(t.finish())


def test_completions_stream_uses_text_chunks():
    t = translator(COMPLETIONS, stream_options={"include_usage": True})
    chunks = [c for chunks in run(t, sse(START, text_delta("Hi"), end())) for c in chunks]
    assert [c["object"] for c in chunks] == ["text_completion"] * 3
    assert [c["choices"][0] for c in chunks[:2]] == [
        {"index": 0, "text": "Hi", "logprobs": None, "finish_reason": None},
        {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]
    assert chunks[2]["usage"]["total_tokens"] == 7


# -- embeddings -----------------------------------------------------------------------------------------
EMBED_REQUESTS = [
    ({"input": "hello"}, {"texts": ["hello"], "input_type": "search_document", "embedding_types": ["float"]}),
    ({"input": ["a", "b"], "encoding_format": "base64", "dimensions": 256, "user": "u"},
     {"texts": ["a", "b"], "input_type": "search_document", "embedding_types": ["base64"], "output_dimension": 256}),
    ({"input": "q", "input_type": "search_query", "truncate": "NONE"},
     {"texts": ["q"], "input_type": "search_query", "embedding_types": ["float"], "truncate": "NONE"}),
]


@pytest.mark.parametrize(("given", "expected"), EMBED_REQUESTS)
def test_embed_request(given, expected):
    req = adapter().build_request(EMBEDDINGS, {"model": "x", **given}, "embed-v4.0")
    assert req.url == "https://api.cohere.test/v2/embed"
    assert req.json == {"model": "embed-v4.0", **expected}


def test_embed_input_type_option_is_the_default():
    req = adapter(embed_input_type="clustering").build_request(EMBEDDINGS, {"input": "a"}, "m")
    assert req.json["input_type"] == "clustering"


@pytest.mark.parametrize(("given", "param"), [({"input": [1, 2]}, "input"), ({"input": []}, "input"),
                                              ({"input": "a", "encoding_format": "int8"}, "encoding_format")])
def test_untranslatable_embed_requests_get_400(given, param):
    with pytest.raises(InvalidRequestError) as exc:
        adapter().build_request(EMBEDDINGS, {"model": "x", **given}, "m")
    assert exc.value.param == param


def test_embed_response_float_and_base64():
    vec = [0.5, -0.25]
    packed = base64.b64encode(struct.pack("<2f", *vec)).decode()
    meta = {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3}}
    for embeddings, expected in [({"float": [vec, vec]}, vec), ({"base64": [packed, packed]}, packed),
                                 ([vec, vec], vec)]:
        out = adapter().parse_response(EMBEDDINGS, {"id": "e", "embeddings": embeddings, "meta": meta}, "embed-v4.0")
        assert out == {"object": "list", "model": "embed-v4.0",
                       "data": [{"object": "embedding", "index": i, "embedding": expected} for i in (0, 1)],
                       "usage": {"prompt_tokens": 3, "total_tokens": 3}}


def test_embed_response_without_vectors_is_malformed():
    with pytest.raises(ValueError):
        adapter().parse_response(EMBEDDINGS, {"embeddings": {"int8": [[1]]}}, "m")


# -- errors, models -------------------------------------------------------------------------------------
ERRORS = [
    (400, b'{"id":"e1","message":"invalid request: p must be between 0.01 and 0.99"}', {}, 400,
     "invalid_request_error"),
    (401, b'{"message":"invalid api token"}', {}, 502, "upstream_error"),
    (429, b'{"message":"You are using a Trial key"}', {"Retry-After": "3"}, 429, "rate_limit_error"),
    (500, b"<html>oops</html>", {}, 502, "upstream_error"),
    (504, b'{"message":"generation timed out"}', {}, 504, "timeout_error"),
]


@pytest.mark.parametrize(("status", "body", "headers", "expected", "kind"), ERRORS)
def test_error_bodies_map_to_gateway_errors(status, body, headers, expected, kind):
    err = adapter().parse_error(status, body, headers)
    assert (err.status, err.type) == (expected, kind)
    assert err.message.startswith("co: ") and "<html>" not in err.message
    if status == 400:
        assert err.message == "co: invalid request: p must be between 0.01 and 0.99"
    if status == 401:
        assert err.code == "upstream_auth_error"
    if status == 429:
        assert err.headers == {"Retry-After": "3"} and err.retryable


def test_models_listing_and_health_use_cohere_v1_models():
    a = adapter()
    assert a.models_request().url == "https://api.cohere.test/v1/models?page_size=1000"
    assert a.health_request().headers == {"Authorization": "Bearer sk-co"}
    listing = {"models": [{"name": "command-a-03-2025", "endpoints": ["chat"]}, {"name": "embed-v4.0"}, {"x": 1}],
               "next_page_token": None}
    assert a.parse_models(listing) == ["command-a-03-2025", "embed-v4.0"]


def test_options_are_validated():
    with pytest.raises(ValueError):
        CohereOptions(usage_source="guess")
    with pytest.raises(ValueError):
        CohereOptions(unknown=1)
