"""Chat: OpenAI chat request → Cohere ``POST /v2/chat`` body, and Cohere's answer → ``chat.completion``.

Every per-field decision is listed in docs/providers/cohere.md. The request body is built from an
allow-list, so an OpenAI field Cohere does not know never reaches it (Cohere rejects unknown fields);
what is dropped is logged at debug level.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from gateway.errors import InvalidRequestError
from plugins.providers.cohere.common import finish_reason, usage_of

log = logging.getLogger("llm_gateway.providers.cohere")

# Same name and meaning on both sides.
COPIED = ("temperature", "seed", "frequency_penalty", "presence_penalty")
# Cohere-only fields a client may send as extensions; forwarded untouched.
NATIVE = ("k", "documents", "citation_options", "thinking", "strict_tools", "priority", "safety_mode")
# Read by the translation itself (or by the stream translator), so never reported as dropped.
HANDLED = frozenset({
    "model", "messages", "stream", "stream_options", "n", "stop", "top_p", "max_tokens", "max_completion_tokens",
    "tools", "tool_choice", "response_format", *COPIED, *NATIVE,
})
# Cohere's nucleus-sampling range; OpenAI allows 0..1 and many clients send the default 1.
P_MIN, P_MAX = 0.01, 0.99


def build_chat(body: dict[str, Any], model: str, *, safety_mode: str | None = None,
               provider: str = "cohere") -> dict[str, Any]:
    """The ``/v2/chat`` body for an OpenAI chat request (``stream`` is copied as a bool)."""
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise InvalidRequestError("Cohere: the deprecated 'functions' API is not supported; use 'tools'.",
                                  param="functions")
    if (body.get("n") or 1) != 1:
        raise InvalidRequestError("Cohere returns a single choice: 'n' must be 1.", param="n")
    out: dict[str, Any] = {"model": model, "messages": convert_messages(body["messages"]),
                           "stream": bool(body.get("stream"))}
    out.update({k: body[k] for k in COPIED if body.get(k) is not None})
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if body.get("stop"):
        out["stop_sequences"] = stop_sequences(body["stop"])
    top_p = body.get("top_p")
    if top_p is not None:
        # Clamped: 1 ("no truncation", OpenAI's default) is outside Cohere's range; others go as sent.
        out["p"] = min(max(float(top_p), P_MIN), P_MAX) if isinstance(top_p, int | float) else top_p
    out.update(tool_fields(body.get("tools"), body.get("tool_choice")))
    fmt = response_format(body.get("response_format"))
    if fmt is not None:
        out["response_format"] = fmt
    if safety_mode is not None:
        out["safety_mode"] = safety_mode
    out.update({k: body[k] for k in NATIVE if body.get(k) is not None})
    for key in body.keys() - HANDLED:
        log.debug("provider %s: dropping parameter %r (no Cohere equivalent)", provider, key)
    return out


def stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise InvalidRequestError("'stop' must be a string or an array of strings.", param="stop")


# -- messages ----------------------------------------------------------------------------------------
def convert_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, msg in enumerate(messages):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text_content(msg.get("content"), where)})
        elif role == "user":
            out.append({"role": "user", "content": user_content(msg.get("content"), where)})
        elif role == "assistant":
            out.append(assistant_message(msg, where))
        elif role == "tool":
            if not isinstance(msg.get("tool_call_id"), str):
                raise InvalidRequestError("A tool message needs its 'tool_call_id'.", param=f"{where}.tool_call_id")
            out.append({"role": "tool", "tool_call_id": msg["tool_call_id"],
                        "content": text_content(msg.get("content"), where)})
        else:
            raise InvalidRequestError(f"Cohere does not support the message role {role!r}.", param=f"{where}.role")
    return out


def text_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A string stays a string; text parts (and an assistant's ``refusal`` parts) become Cohere text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequestError("Message content must be a string or an array of parts.", param=f"{where}.content")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise InvalidRequestError(f"Cohere does not accept content parts of type {kind!r} here.",
                                      param=f"{where}.content[{j}].type")
        parts.append({"type": "text", "text": part.get(kind) or ""})
    return parts


def user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if not isinstance(content, list):
        return text_content(content, where)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            image = part.get("image_url")
            image = {"url": image} if isinstance(image, str) else dict(image or {})
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        else:
            raise InvalidRequestError(f"Cohere does not accept user content parts of type {kind!r}.",
                                      param=f"{where}.content[{j}].type")
    return parts


def assistant_message(msg: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    content = msg.get("content")
    calls = msg.get("tool_calls") or []
    if content or not calls:  # Cohere wants content or tool calls; "" stands for an empty turn
        out["content"] = text_content(content, where)
    if calls:
        if not isinstance(calls, list) or not all(isinstance(tc, dict) for tc in calls):
            raise InvalidRequestError("'tool_calls' must be an array of objects.", param=f"{where}.tool_calls")
        out["tool_calls"] = [tool_call(tc) for tc in calls]
    if msg.get("tool_plan"):  # our response extension, sent back by clients that replay the message
        out["tool_plan"] = msg["tool_plan"]
    return out


def tool_call(tc: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's shape is Cohere's; only known keys are kept (a stream ``index`` would be rejected)."""
    fn = tc.get("function") or {}
    args = fn.get("arguments")
    if not isinstance(args, str):  # some clients send the arguments object itself
        args = orjson.dumps(args if args is not None else {}).decode()
    return {"id": tc.get("id"), "type": "function", "function": {"name": fn.get("name"), "arguments": args}}


# -- tools and output format -------------------------------------------------------------------------
def tool_fields(tools: Any, choice: Any) -> dict[str, Any]:
    """``tools`` as-is and ``tool_choice`` in Cohere's spelling.

    Cohere cannot force a *named* tool, so a named choice becomes ``REQUIRED`` with ``tools`` narrowed
    to that one tool: the model must call a tool and only that one is offered, which is what the client
    asked for.
    """
    out: dict[str, Any] = {"tools": tools} if tools else {}
    if choice in (None, "auto") or (choice == "none" and not tools):
        return out
    if choice in ("required", "none"):
        return {**out, "tool_choice": choice.upper()}
    name = ((choice.get("function") or {}).get("name")) if isinstance(choice, dict) else None
    only = [t for t in tools or [] if isinstance(t, dict) and (t.get("function") or {}).get("name") == name]
    if not name or not only:
        raise InvalidRequestError("tool_choice must be 'auto', 'none', 'required' or name a function in 'tools'.",
                                  param="tool_choice")
    return {"tools": only, "tool_choice": "REQUIRED"}


def response_format(fmt: Any) -> dict[str, Any] | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise InvalidRequestError("response_format.type must be text, json_object or json_schema.",
                              param="response_format.type")


# -- response ----------------------------------------------------------------------------------------
def parse_chat(payload: Any, model: str, *, usage_source: str = "billed_units",
               provider: str = "cohere") -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError("response is not a JSON object")
    reason = finish_reason(payload.get("finish_reason"), provider, payload.get("error"))
    msg = payload.get("message") or {}
    parts = msg.get("content") or []
    text = "".join(p.get("text") or "" for p in parts if p.get("type", "text") == "text")
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not msg.get("tool_calls") else None}
    thinking = "".join(p.get("thinking") or "" for p in parts if p.get("type") == "thinking")
    if thinking:  # non-standard, the same field other reasoning vendors' adapters use
        message["reasoning_content"] = thinking
    if msg.get("tool_calls"):
        message["tool_calls"] = [tool_call(tc) for tc in msg["tool_calls"]]
    if msg.get("tool_plan"):
        message["tool_plan"] = msg["tool_plan"]
    out: dict[str, Any] = {
        "id": payload.get("id") or f"chatcmpl-{time.time_ns():x}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
    }
    usage = usage_of(payload.get("usage"), usage_source)
    if usage is not None:
        out["usage"] = usage
    return out
