"""The anthropic adapter's request side: endpoint and headers, messages, parameters, tools."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.errors import InvalidRequestError, UnsupportedOperation
from gateway.operations import CHAT, COMPLETIONS, EMBEDDINGS
from plugins.providers.anthropic import AnthropicOptions
from tests.providers.anthropic_helpers import CALL, MODEL, TOOL, USER, chat, make_adapter, payload


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
