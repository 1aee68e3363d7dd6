"""Canonical chat answers → Responses objects, and a native Response → the canonical chat answer
(for usage, plugins and the cache). Stateless: ``store`` is always false in what we answer."""

from __future__ import annotations

import time
from typing import Any

# finish_reason → (status, incomplete_details.reason)
STATUS = {"length": ("incomplete", "max_output_tokens"), "content_filter": ("incomplete", "content_filter")}
FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


def usage(chat_usage: Any) -> dict[str, Any] | None:
    if not isinstance(chat_usage, dict):
        return None
    prompt, completion = int(chat_usage.get("prompt_tokens") or 0), int(chat_usage.get("completion_tokens") or 0)
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": int(cached)},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": int(reasoning)},
            "total_tokens": prompt + completion}


def chat_usage(resp_usage: Any) -> dict[str, Any] | None:
    if not isinstance(resp_usage, dict):
        return None
    prompt, completion = int(resp_usage.get("input_tokens") or 0), int(resp_usage.get("output_tokens") or 0)
    cached = (resp_usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(cached)}}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call_id: Any, name: Any, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def envelope(body: dict[str, Any], rid: str, model: Any, created: int) -> dict[str, Any]:
    """A Response without output: the request echo every Response carries."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    return {"id": rid, "object": "response", "created_at": created, "status": "in_progress", "background": False,
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "metadata": body.get("metadata") or {},
            "model": model, "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None, "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "store": False, "temperature": body.get("temperature"), "text": text,
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_p": body.get("top_p"), "truncation": body.get("truncation", "disabled"), "user": body.get("user"),
            "usage": None}


def finished(resp: dict[str, Any], finish_reason: Any, output: list[dict[str, Any]], use: Any) -> dict[str, Any]:
    status, reason = STATUS.get(finish_reason, ("completed", None))
    return {**resp, "status": status, "output": output, "usage": usage(use),
            "incomplete_details": {"reason": reason} if reason else None}


def response(body: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    choice = (result.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    base = str(result.get("id") or f"{time.time_ns():x}")
    output = []
    if msg.get("content"):
        output.append(message_item(f"msg_{base}", msg["content"]))
    for n, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        output.append(call_item(f"fc_{base}_{n}", call.get("id"), fn.get("name"), fn.get("arguments") or ""))
    resp = envelope(body, f"resp_{base}", result.get("model"), int(result.get("created") or time.time()))
    return finished(resp, choice.get("finish_reason"), output, result.get("usage"))


def chat_completion(payload: dict[str, Any]) -> dict[str, Any]:
    """A native Response → the canonical chat completion."""
    texts, calls = [], []
    for item in payload.get("output") or []:
        if item.get("type") == "message":
            texts += [p.get("text", "") for p in item.get("content") or [] if p.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}})
    reason = (payload.get("incomplete_details") or {}).get("reason")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    finish = FINISH.get(reason, "tool_calls" if calls else "stop")
    return {"id": payload.get("id"), "object": "chat.completion", "created": payload.get("created_at"),
            "model": payload.get("model"), "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": chat_usage(payload.get("usage"))}
