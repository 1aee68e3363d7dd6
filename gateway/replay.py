"""Replaying a complete OpenAI response as a stream (e.g. a cached answer to a streaming client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.adapter import Chunk


def response_to_chunks(response: dict[str, Any], include_usage: bool) -> Iterator[Chunk]:
    """Chat completions and legacy completions, in the chunk shapes OpenAI streams."""
    is_chat = response.get("object") == "chat.completion"
    base = {
        "id": response.get("id"),
        "object": "chat.completion.chunk" if is_chat else "text_completion",
        "created": response.get("created"),
        "model": response.get("model"),
    }
    for choice in response.get("choices", []):
        idx = choice.get("index", 0)
        if is_chat:
            msg = choice.get("message") or {}
            delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
            if msg.get("tool_calls"):
                delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(msg["tool_calls"])]
            yield Chunk.of({**base, "choices": [{"index": idx, "delta": delta, "finish_reason": None}]})
            yield Chunk.of({**base, "choices": [{"index": idx, "delta": {},
                                                "finish_reason": choice.get("finish_reason")}]})
        else:
            yield Chunk.of({**base, "choices": [{"index": idx, "text": choice.get("text", ""),
                                                "finish_reason": choice.get("finish_reason")}]})
    if include_usage and response.get("usage"):
        yield Chunk.of({**base, "choices": [], "usage": response["usage"]})
