"""Anthropic stream events → OpenAI chunks, one event at a time (nothing is buffered).

Anthropic streams named events (``message_start``, ``content_block_*``, ``message_delta``,
``message_stop``, ``ping``, ``error``) and numbers content blocks across text and tools; OpenAI
numbers tool calls on their own (``tool_calls[].index``), so each ``tool_use`` block gets the
next tool index. The same translator serves legacy completions (``text_completion`` chunks with
``choices[].text``), where only text deltas matter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from gateway.adapter import Chunk, StreamTranslator
from gateway.sse import SSEEvent
from plugins.providers.anthropic.chat import finish_reason, openai_usage
from plugins.providers.anthropic.errors import stream_error

Handler = Callable[["AnthropicStreamTranslator", dict[str, Any]], Iterable[Chunk]]


class AnthropicStreamTranslator(StreamTranslator):
    def __init__(self, provider: str, model: str, *, chat: bool, include_usage: bool) -> None:
        super().__init__()
        self.provider = provider
        self.chat = chat
        self.include_usage = include_usage
        self.id = ""
        self.model = model
        self.created = int(time.time())
        self.raw_usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self.finish_sent = False

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        obj = orjson.loads(event.data)
        kind = obj.get("type") if isinstance(obj, dict) else None
        handler = HANDLERS.get(kind or event.event or "")
        # Unknown event types are skipped: Anthropic documents that new ones may appear.
        return handler(self, obj) if handler is not None else ()

    # -- chunk shapes ---------------------------------------------------------------------------
    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> Chunk:
        return Chunk.of({
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        })

    def _choice(self, delta: dict[str, Any] | None = None, text: str = "", finish: str | None = None) -> Chunk:
        if self.chat:
            choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return self._chunk([choice])

    def _text(self, text: str) -> Iterable[Chunk]:
        if not text:
            return ()
        return (self._choice({"content": text}, text=text),)

    def _update_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # message_delta counts are cumulative: the latest non-null value of each field wins.
            self.raw_usage.update({k: v for k, v in usage.items() if v is not None})
            self.usage = openai_usage(self.raw_usage)

    # -- events ---------------------------------------------------------------------------------
    def on_message_start(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        message = obj.get("message") or {}
        self.id = message.get("id") or self.id
        self.model = message.get("model") or self.model
        self._update_usage(message.get("usage"))
        if not self.chat:
            return ()  # completions chunks have no role
        return (self._choice({"role": "assistant", "content": ""}),)

    def on_content_block_start(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        block = obj.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            return self._text(block.get("text") or "")
        if kind == "tool_use" and self.chat:
            k = self.tool_index[obj["index"]] = len(self.tool_index)
            call = {"index": k, "id": block["id"], "type": "function",
                    "function": {"name": block["name"], "arguments": ""}}
            return (self._choice({"tool_calls": [call]}),)
        return ()  # thinking, server tools, …: nothing an OpenAI client can act on

    def on_content_block_delta(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        delta = obj.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text") or "")
        if kind == "input_json_delta":
            k = self.tool_index.get(obj.get("index", -1))
            fragment = delta.get("partial_json") or ""
            if k is None or not fragment:
                return ()
            return (self._choice({"tool_calls": [{"index": k, "function": {"arguments": fragment}}]}),)
        if kind == "thinking_delta" and self.chat and delta.get("thinking"):
            # Non-standard but widespread (vLLM, DeepSeek); the OpenAI SDK keeps unknown fields.
            return (self._choice({"reasoning_content": delta["thinking"]}),)
        return ()  # signature_delta, citations_delta

    def on_message_delta(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        self._update_usage(obj.get("usage"))
        stop_reason = (obj.get("delta") or {}).get("stop_reason")
        if stop_reason is None or self.finish_sent:
            return ()
        self.finish_sent = True
        return (self._choice({}, finish=finish_reason(stop_reason)),)

    def on_message_stop(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        self.done = True
        out: list[Chunk] = []
        if not self.finish_sent:  # lenient: a stream without message_delta still ends cleanly
            self.finish_sent = True
            out.append(self._choice({}, finish="stop"))
        if self.usage is None:
            self.usage = openai_usage(self.raw_usage)
        if self.include_usage:
            out.append(self._chunk([], usage=self.usage))
        return out

    def on_ping(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        return ()

    def on_error(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        raise stream_error(self.provider, obj.get("error"))


HANDLERS: dict[str, Handler] = {
    "message_start": AnthropicStreamTranslator.on_message_start,
    "content_block_start": AnthropicStreamTranslator.on_content_block_start,
    "content_block_delta": AnthropicStreamTranslator.on_content_block_delta,
    "message_delta": AnthropicStreamTranslator.on_message_delta,
    "message_stop": AnthropicStreamTranslator.on_message_stop,
    "ping": AnthropicStreamTranslator.on_ping,
    "error": AnthropicStreamTranslator.on_error,
}
