"""Cohere v2 chat stream events → OpenAI chunks, one event at a time.

Events are keyed on the JSON ``type`` (the SSE ``event:`` name is only a fallback). ``message-end`` is
the terminal event: it carries the finish reason and the only usage of the stream, or, with
``finish_reason: ERROR``, the error text. Citations and ``debug`` events have no OpenAI form and are
skipped. In text mode (legacy completions) the chunks are ``text_completion`` ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from gateway.adapter import Chunk, StreamTranslator
from gateway.sse import SSEEvent
from plugins.providers.cohere.common import finish_reason, usage_of

log = logging.getLogger("llm_gateway.providers.cohere")
NOTHING: tuple[Chunk, ...] = ()


class CohereStreamTranslator(StreamTranslator):
    def __init__(self, model: str, *, include_usage: bool = False, usage_source: str = "billed_units",
                 text_mode: bool = False, provider: str = "cohere") -> None:
        super().__init__()
        self.model = model
        self.include_usage = include_usage
        self.usage_source = usage_source
        self.text_mode = text_mode
        self.provider = provider
        self.id = f"chatcmpl-{time.time_ns():x}"  # replaced by Cohere's id at message-start
        self.created = int(time.time())
        # Cohere tool-call index → OpenAI index (dense, in order of appearance).
        self.tool_index: dict[Any, int] = {}

    # -- dispatch --------------------------------------------------------------------------------
    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        if not event.data.strip() or event.data == b"[DONE]":  # the SDK tolerates a stray [DONE] too
            return NOTHING
        obj = orjson.loads(event.data)
        kind = obj.get("type") or event.event
        handler = HANDLERS.get(kind)
        if handler is None:
            if kind not in SKIPPED:
                log.debug("provider %s: ignoring stream event %r", self.provider, kind)
            return NOTHING
        return handler(self, obj)

    # -- chunk shapes ----------------------------------------------------------------------------
    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> Chunk:
        kind = "text_completion" if self.text_mode else "chat.completion.chunk"
        return Chunk.of({"id": self.id, "object": kind, "created": self.created, "model": self.model,
                         "choices": choices, **extra})

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        if self.text_mode:
            choice = {"index": 0, "text": delta.get("content") or "", "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self.chunk([choice])

    # -- events ----------------------------------------------------------------------------------
    def on_message_start(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        if obj.get("id"):
            self.id = obj["id"]
        # Text completions have no role chunk; chat clients expect one first.
        return NOTHING if self.text_mode else (self.delta({"role": "assistant", "content": ""}),)

    def on_content_delta(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        content = message_of(obj).get("content") or {}
        if content.get("text"):
            return (self.delta({"content": content["text"]}),)
        # A reasoning model's thoughts: the non-standard field of the non-stream message too.
        if content.get("thinking") and not self.text_mode:
            return (self.delta({"reasoning_content": content["thinking"]}),)
        return NOTHING

    def on_tool_plan_delta(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        plan = message_of(obj).get("tool_plan")
        # Same extension field as the non-stream message, so replaying the turn keeps the plan.
        return (self.delta({"tool_plan": plan}),) if plan and not self.text_mode else NOTHING

    def on_tool_call_start(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        call = message_of(obj).get("tool_calls") or {}
        index = self.tool_index.setdefault(obj.get("index", len(self.tool_index)), len(self.tool_index))
        fn = call.get("function") or {}
        entry = {"index": index, "id": call.get("id"), "type": "function",
                 "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}}
        return NOTHING if self.text_mode else (self.delta({"tool_calls": [entry]}),)

    def on_tool_call_delta(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        call = message_of(obj).get("tool_calls") or {}
        fragment = (call.get("function") or {}).get("arguments")
        if not fragment or self.text_mode:
            return NOTHING
        index = self.tool_index.get(obj.get("index"), max(self.tool_index.values(), default=0))
        return (self.delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),)

    def on_message_end(self, obj: dict[str, Any]) -> Iterable[Chunk]:
        delta = obj.get("delta") or {}
        # Recorded before a failure is raised, so metrics still see what was spent.
        self.usage = usage_of(delta.get("usage"), self.usage_source)
        reason = finish_reason(delta.get("finish_reason"), self.provider, delta.get("error"))
        self.done = True
        chunks = [self.delta({}, finish=reason)]
        if self.include_usage and self.usage is not None:
            chunks.append(self.chunk([], usage=self.usage))
        return chunks


def message_of(obj: dict[str, Any]) -> dict[str, Any]:
    return (obj.get("delta") or {}).get("message") or {}


HANDLERS: dict[str, Callable[[CohereStreamTranslator, dict[str, Any]], Iterable[Chunk]]] = {
    "message-start": CohereStreamTranslator.on_message_start,
    "content-delta": CohereStreamTranslator.on_content_delta,
    "tool-plan-delta": CohereStreamTranslator.on_tool_plan_delta,
    "tool-call-start": CohereStreamTranslator.on_tool_call_start,
    "tool-call-delta": CohereStreamTranslator.on_tool_call_delta,
    "message-end": CohereStreamTranslator.on_message_end,
}
# Known events with nothing to say in OpenAI's format (not logged).
SKIPPED = frozenset({"content-start", "content-end", "tool-call-end", "citation-start", "citation-end", "debug"})
