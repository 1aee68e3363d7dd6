"""The dialects' stream encoders over canonical chunks: parallel tool calls, reasoning, usage."""

from __future__ import annotations

import json
from typing import Any

from gateway.adapter import Chunk
from plugins.dialects.anthropic_messages.stream import MessagesEncoder
from plugins.dialects.openai_responses.stream import ResponsesEncoder
from tests.emulators.fixtures import parse_sse


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None) -> Chunk:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return Chunk.of({"id": "c1", "model": "m", "choices": choices, **({"usage": usage} if usage else {})})


def call(k: int, cid: str | None = None, name: str | None = None, args: str = "") -> dict[str, Any]:
    fn = {"arguments": args, **({"name": name} if name else {})}
    return {"tool_calls": [{"index": k, **({"id": cid, "type": "function"} if cid else {}), "function": fn}]}


STREAM = [
    [chunk({"role": "assistant", "content": ""})],
    [chunk({"reasoning_content": "think"}), chunk({"content": "Checking."})],
    [chunk(call(0, "call_a", "weather")), chunk(call(0, args='{"city":')), chunk(call(0, args='"Paris"}'))],
    [chunk(call(1, "call_b", "time", '{"tz":"CET"}'))],
    [chunk({}, "tool_calls")],
    [chunk(usage={"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}})],
]


def events(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(d) for _, d in parse_sse(data.decode())]


def test_messages_encoder_parallel_tools_and_thinking():
    enc = MessagesEncoder("m", thinking=True)
    out = events(b"".join(enc.encode(batch) for batch in STREAM) + enc.end())
    starts = [(e["index"], e["content_block"]["type"]) for e in out if e["type"] == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    args = {i: "".join(e["delta"]["partial_json"] for e in out if e["type"] == "content_block_delta"
                       and e["index"] == i and e["delta"]["type"] == "input_json_delta") for i in (2, 3)}
    assert json.loads(args[2]) == {"city": "Paris"} and json.loads(args[3]) == {"tz": "CET"}
    final = out[-2]
    assert final["type"] == "message_delta" and final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {"input_tokens": 6, "output_tokens": 5, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 4}


def test_messages_encoder_drops_reasoning_unless_thinking_was_asked():
    enc = MessagesEncoder("m", thinking=False)
    out = events(b"".join(enc.encode(batch) for batch in STREAM) + enc.end())
    assert "thinking" not in [e["content_block"]["type"] for e in out if e["type"] == "content_block_start"]


def test_responses_encoder_parallel_tools():
    enc = ResponsesEncoder({"model": "m", "input": "x"}, "m", 1)
    out = events(b"".join(enc.encode(batch) for batch in STREAM) + enc.end())
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    added = [(e["output_index"], e["item"]["type"]) for e in out if e["type"] == "response.output_item.added"]
    assert added == [(0, "message"), (1, "function_call"), (2, "function_call")]
    final = out[-1]["response"]
    assert out[-1]["type"] == "response.completed"
    assert [json.loads(i["arguments"]) for i in final["output"][1:]] == [{"city": "Paris"}, {"tz": "CET"}]
    assert final["usage"]["input_tokens"] == 10 and final["usage"]["input_tokens_details"]["cached_tokens"] == 4
