"""An Anthropic Messages body → the canonical chat body. Every per-field decision is listed in
docs/dialects.md; fields that only the native API can perform are collected as a refusal, raised
only when a request goes to a provider that does not speak Messages itself."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

from gateway.errors import InvalidRequestError

log = logging.getLogger("llm_gateway.dialects.anthropic_messages")

# Hints that change no answer's meaning: dropped when translating (docs/dialects.md says why).
DROPPED = frozenset({"thinking", "context_management", "cache_control", "service_tier", "inference_geo"})
# Top-level fields only the native API can perform.
NATIVE_ONLY = ("container", "mcp_servers")
# Claude Code's first system block: varies per conversation, so it would defeat prompt caching.
BILLING_PREFIX = "x-anthropic-billing-header:"
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def check(body: dict[str, Any], *, needs_max_tokens: bool = True) -> None:
    """What the Messages API itself requires (its own 400s, in its words)."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad("Field required", "model")
    max_tokens = body.get("max_tokens")
    if needs_max_tokens and (type(max_tokens) is not int or max_tokens < 1):
        raise bad("Field required (a positive integer)", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("Field required (a non-empty array)", "messages")


def to_chat(body: dict[str, Any]) -> tuple[dict[str, Any], InvalidRequestError | None]:
    """(canonical chat body, the refusal a translated provider must answer with, if any)."""
    refusal: InvalidRequestError | None = None
    for key in NATIVE_ONLY:
        if body.get(key):
            refusal = refusal or bad("needs a provider that serves the Messages API natively", key)
    messages = system_messages(body.get("system"), "system")
    refusals: list[InvalidRequestError] = []
    for i, msg in enumerate(body["messages"]):
        messages += turn(msg, f"messages[{i}]", refusals)
    refusal = refusal or (refusals[0] if refusals else None)
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    if body.get("top_k") is not None:
        chat["top_k"] = body["top_k"]  # kept only for targets that have it (see AnthropicMessages.upstream)
    refusal = apply_tools(body, chat) or refusal
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = user_id(metadata["user_id"])
    apply_output_format(body.get("output_config"), chat)
    dropped = sorted(set(body) & DROPPED)
    if dropped:
        log.debug("translating a Messages request: dropping hints %s", dropped)
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return chat, refusal


def user_id(value: str) -> str:
    """Chat vendors cap ``user`` at 64 characters; Claude Code's id is a JSON document. A longer
    id is sent as its SHA-256 (hex, 64 characters): still one stable id per end user."""
    return value if len(value) <= 64 else hashlib.sha256(value.encode()).hexdigest()


def system_messages(system: Any, where: str) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise bad("must be a string or an array of text blocks", where)
    texts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad("must be a text block", f"{where}[{j}]")
        if not block["text"].startswith(BILLING_PREFIX):
            texts.append(block["text"])
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def turn(msg: Any, where: str, refusals: list[InvalidRequestError]) -> list[dict[str, Any]]:
    """One Messages turn → chat messages: tool results first (one ``tool`` message each, before
    the user's remaining content), then the turn itself."""
    if not isinstance(msg, dict):
        raise bad("must be an object", where)
    role, content = msg.get("role"), msg.get("content")
    if role == "system":  # Claude Code sends one inside messages
        return system_messages(content, f"{where}.content")
    if role not in ("user", "assistant"):
        raise bad(f"role {role!r} is not one of user, assistant", f"{where}.role")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad("must be a string or an array of content blocks", f"{where}.content")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        path = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            out.append(tool_message(block, path))
        elif kind == "tool_use" and role == "assistant":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):
            # Thinking blocks are dropped: a foreign signature would fail later on Anthropic.
            part = lenient_part(block, kind, path, refusals)
            if part is not None:
                parts.append(part)
    return out + turn_message(role, parts, calls)


def lenient_part(block: Any, kind: Any, where: str, refusals: list[InvalidRequestError]) -> dict[str, Any] | None:
    """A content part; for a block chat cannot carry, the refusal is kept for translated targets
    and the canonical body keeps the block as JSON text (plugins still see what was sent)."""
    try:
        return content_part(block, kind, where)
    except InvalidRequestError as exc:
        refusals.append(exc)
        return {"type": "text", "text": orjson.dumps(block).decode()}


def turn_message(role: str, parts: list[dict[str, Any]], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if role == "assistant":
        if not parts and not calls:
            return []
        text = "".join(p.get("text", "") for p in parts)
        return [{"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [{"role": "user", "content": parts[0]["text"]}]  # the shape every vendor takes
    return [{"role": "user", "content": parts}] if parts else []


def content_part(block: Any, kind: Any, where: str) -> dict[str, Any] | None:
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise bad("'text' must be a string", f"{where}.text")
        return {"type": "text", "text": text} if text else None
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": source_url(block.get("source"), where)}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
            part: dict[str, Any] = {"file_data": source_url(source, where)}
            if isinstance(block.get("title"), str):
                part["filename"] = block["title"]
            return {"type": "file", "file": part}
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return {"type": "text", "text": source["data"]}
        raise bad("only base64 PDF and plain-text documents can be translated", f"{where}.source")
    raise bad(f"content block type {kind!r} needs a provider that serves the Messages API natively",
              f"{where}.type")


def source_url(source: Any, where: str) -> str:
    if isinstance(source, dict) and source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise bad("source must be base64 data or a URL", f"{where}.source")


def tool_message(block: dict[str, Any], where: str) -> dict[str, Any]:
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise bad("'tool_use_id' is required", f"{where}.tool_use_id")
    content = block.get("content")
    if isinstance(content, list):
        texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        content = "\n".join(texts)
    text = content if isinstance(content, str) else ""
    if block.get("is_error"):
        # Chat has no error flag on tool results; the words keep the meaning for the model.
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": tool_id, "content": text}


def apply_tools(body: dict[str, Any], chat: dict[str, Any]) -> InvalidRequestError | None:
    tools = body.get("tools")
    refusal = None
    if tools:
        if not isinstance(tools, list):
            raise bad("must be an array", "tools")
        functions = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
                kind = tool.get("type") if isinstance(tool, dict) else None
                refusal = refusal or bad(f"server tool {kind!r} needs a provider that serves the Messages API "
                                         "natively", f"tools[{i}].type")
                continue
            functions.append(function_tool(tool, i))
        if functions:
            chat["tools"] = functions
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and chat.get("tools"):
        kind = choice.get("type")
        if kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in TOOL_CHOICES:
            chat["tool_choice"] = TOOL_CHOICES[kind]
        else:
            raise bad("must be auto, any, tool or none", "tool_choice.type")
        if choice.get("disable_parallel_tool_use") and kind != "none":
            chat["parallel_tool_calls"] = False
    return refusal


def function_tool(tool: dict[str, Any], i: int) -> dict[str, Any]:
    if not isinstance(tool.get("name"), str):
        raise bad("'name' is required", f"tools[{i}].name")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise bad("'input_schema' must be an object", f"tools[{i}].input_schema")
    # $schema is rejected by some upstreams; cache_control and defer_loading are hints (dropped).
    fn: dict[str, Any] = {"name": tool["name"], "parameters": {k: v for k, v in schema.items() if k != "$schema"}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool.get("strict") is True:
        fn["strict"] = True
    return {"type": "function", "function": fn}


def apply_output_format(config: Any, chat: dict[str, Any]) -> None:
    """``output_config.format`` (structured output) changes the answer: mapped. ``effort`` is a
    hint: dropped (chat's reasoning_effort is refused by models that do not reason)."""
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
