"""Canonical chat answers → Anthropic Messages bodies; errors → Anthropic's error envelope; the
model list in Anthropic's shape. The reverse mappings (Anthropic → chat) are the anthropic
provider adapter's, reused for native answers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
# Anthropic's error type for each status (docs.claude.com/en/api/errors); the SDK picks its
# exception class by status, so the status decides, never the gateway's own type name.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 409: "conflict_error",
               413: "request_too_large", 429: "rate_limit_error", 504: "timeout_error",
               529: "overloaded_error"}


def stop_reason(finish_reason: Any) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def message_id(chat_id: Any) -> str:
    text = str(chat_id or f"{time.time_ns():x}")
    return text if text.startswith("msg_") else f"msg_{text}"


def usage(chat_usage: Any) -> dict[str, int]:
    """Anthropic's ``input_tokens`` excludes cache reads; chat's ``prompt_tokens`` includes them."""
    chat_usage = chat_usage if isinstance(chat_usage, dict) else {}
    details = chat_usage.get("prompt_tokens_details")
    cached = int((details or {}).get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {"input_tokens": max(0, int(chat_usage.get("prompt_tokens") or 0) - cached),
            "output_tokens": int(chat_usage.get("completion_tokens") or 0),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def tool_input(arguments: Any) -> Any:
    """Chat carries tool arguments as a JSON string, Messages as the object."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}  # a model's broken JSON: an empty input beats failing the whole answer
    return value if isinstance(value, dict) else {}


def message(result: dict[str, Any], *, thinking: bool) -> dict[str, Any]:
    choice = (result.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if thinking and msg.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": msg["reasoning_content"], "signature": ""})
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                        "input": tool_input(fn.get("arguments"))})
    return {"id": message_id(result.get("id")), "type": "message", "role": "assistant",
            "model": result.get("model"), "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")), "stop_sequence": None,
            "usage": usage(result.get("usage"))}


def error_status(error: GatewayError) -> int:
    """Anthropic's "overloaded" is 529: the gateway's 503s (overloaded vendor, open circuit,
    draining) and a vendor's own 503 (which the core reports as 502) become it."""
    if error.status == 503 or getattr(error, "upstream_status", None) in (503, 529):
        return 529
    return error.status


def error_body(error: GatewayError, request_id: str | None = None) -> bytes:
    status = error_status(error)
    body: dict[str, Any] = {"type": "error", "error": {
        "type": ERROR_TYPES.get(status, "api_error"), "message": error.message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def error_response(error: GatewayError, headers: Mapping[str, str]) -> web.Response:
    merged = {**error.headers, **headers}
    if "x-request-id" in merged:
        merged["request-id"] = merged["x-request-id"]
    return web.Response(body=error_body(error, merged.get("x-request-id")), status=error_status(error),
                        headers=merged, content_type="application/json")


def models_page(listing: dict[str, Any]) -> dict[str, Any]:
    data = []
    for entry in listing.get("data") or []:
        created = entry.get("created") or 0
        data.append({"type": "model", "id": entry["id"], "display_name": entry["id"],
                     "created_at": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
