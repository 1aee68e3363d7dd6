"""Canonical chunks → Anthropic Messages stream events, as each batch arrives (nothing is held).

``message_start`` goes out with the first upstream chunk; content blocks are numbered from 0 with
one open at a time; tool arguments become ``input_json_delta`` fragments as they come; the
finish reason and usage close the stream with ``message_delta`` (cumulative usage) and
``message_stop``. A natively relayed stream never comes here: its bytes are the vendor's.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialect import ChunkEncoder
from gateway.errors import GatewayError
from plugins.dialects.anthropic_messages.response import error_body, message_id, stop_reason, usage


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


class MessagesEncoder(ChunkEncoder):
    ping = event("ping", {})  # Anthropic's own keep-alive event, as its API sends while waiting

    def __init__(self, model: str | None, *, thinking: bool) -> None:
        super().__init__()
        self.model = model
        self.thinking = thinking  # reasoning text is sent as thinking only when it was asked for
        self.open: str | None = None  # the open block's kind: text, thinking, tool_use
        self.index = -1  # the open (or last) block's index
        self.tools: dict[int, int] = {}  # chat tool_calls index → block index
        self.finish: str | None = None

    def start(self, obj: dict[str, Any], out: list[bytes]) -> None:
        out.append(event("message_start", {"message": {
            "id": message_id(obj.get("id")), "type": "message", "role": "assistant",
            "model": obj.get("model") or self.model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}}))

    def delta(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content")
        if reasoning and self.thinking:
            self.block("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
            out.append(event("content_block_delta", {"index": self.index, "delta": {
                "type": "thinking_delta", "thinking": reasoning}}))
        if delta.get("content"):
            self.block("text", {"type": "text", "text": ""}, out)
            out.append(event("content_block_delta", {"index": self.index, "delta": {
                "type": "text_delta", "text": delta["content"]}}))
        for call in delta.get("tool_calls") or ():
            self.tool_delta(call, out)
        if choice.get("finish_reason"):
            self.close(out)
            self.finish = choice["finish_reason"]

    def tool_delta(self, call: dict[str, Any], out: list[bytes]) -> None:
        k = call.get("index", 0)
        fn = call.get("function") or {}
        if k not in self.tools:
            self.close(out)
            self.index += 1
            self.tools[k] = self.index
            self.open = "tool_use"
            out.append(event("content_block_start", {"index": self.index, "content_block": {
                "type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": {}}}))
        if fn.get("arguments"):
            out.append(event("content_block_delta", {"index": self.tools[k], "delta": {
                "type": "input_json_delta", "partial_json": fn["arguments"]}}))

    def block(self, kind: str, start: dict[str, Any], out: list[bytes]) -> None:
        if self.open == kind:
            return
        self.close(out)
        self.index += 1
        self.open = kind
        out.append(event("content_block_start", {"index": self.index, "content_block": start}))

    def close(self, out: list[bytes]) -> None:
        if self.open is not None:
            out.append(event("content_block_stop", {"index": self.index}))
            self.open = None

    def end(self) -> bytes:
        out: list[bytes] = []
        self.begin({}, out)
        self.close(out)
        out.append(event("message_delta", {"delta": {"stop_reason": stop_reason(self.finish), "stop_sequence": None},
                                           "usage": usage(self.usage)}))
        out.append(event("message_stop", {}))
        return b"".join(out)

    def error(self, error: GatewayError) -> bytes:
        return b"event: error\ndata: " + error_body(error) + b"\n\n"
