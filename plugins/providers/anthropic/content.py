"""Message content: OpenAI content parts, tool calls and tool results → Anthropic content blocks.

Errors name the offending field with OpenAI's path syntax (``messages[2].tool_calls[0]...``) so a
client can find it in the request it sent, not in the body the gateway built.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequestError

Block = dict[str, Any]


def bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def message_blocks(msg: dict[str, Any], i: int) -> list[Block]:
    """The content blocks of one non-system OpenAI message (possibly none)."""
    role = msg.get("role")
    if role == "user":
        return part_blocks(msg.get("content"), f"messages[{i}].content")
    if role == "assistant":
        return assistant_blocks(msg, i)
    if role == "tool":
        return [tool_result(msg, i)]
    raise bad(f"role {role!r} is not supported by this provider", f"messages[{i}].role")


def with_cache_control(block: Block, part: dict[str, Any]) -> Block:
    # Clients that target Anthropic through OpenAI-style bodies mark prompt-cache breakpoints
    # on parts; keeping the marker preserves their caching.
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def part_blocks(content: Any, where: str) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad("must be a string or an array of content parts", where)
    blocks = [part_block(part, f"{where}[{j}]") for j, part in enumerate(content)]
    return [b for b in blocks if b is not None]


def part_block(part: Any, where: str) -> Block | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise bad(f"'{kind}' must be a string", f"{where}.{kind}")
        # Anthropic rejects empty text blocks; an empty part carries nothing anyway.
        return with_cache_control({"type": "text", "text": text}, part) if text else None
    if kind == "image_url":
        return with_cache_control(image_block(part.get("image_url"), f"{where}.image_url"), part)
    if kind == "file":
        return with_cache_control(document_block(part.get("file"), f"{where}.file"), part)
    raise bad(f"content part type {kind!r} is not supported by this provider", f"{where}.type")


def data_url(url: str, where: str) -> tuple[str, str]:
    """(media type, base64 data) of a ``data:<type>;base64,<data>`` URL."""
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise bad("data URLs must be base64-encoded (data:<type>;base64,<data>)", where)
    return head[5:].split(";", 1)[0], data


def image_block(image: Any, where: str) -> Block:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise bad("'url' is required", f"{where}.url")
    if url.startswith("data:"):
        media_type, data = data_url(url, f"{where}.url")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad("must be an http(s) URL or a base64 data URL", f"{where}.url")


def document_block(file: Any, where: str) -> Block:
    """Inline files (``file_data`` data URL, e.g. a PDF) become documents; uploaded file ids live
    in OpenAI's storage, which Anthropic cannot read."""
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data.startswith("data:"):
        raise bad("only inline 'file_data' (a base64 data URL) is supported", f"{where}.file_data")
    media_type, payload = data_url(data, f"{where}.file_data")
    block: Block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": payload}}
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def text_blocks(content: Any, where: str) -> list[Block]:
    """System/developer content: text only (the top-level ``system`` accepts nothing else)."""
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad("system and developer messages may only contain text parts", f"{where}[{j}]")
    return part_blocks(content, where)


def assistant_blocks(msg: dict[str, Any], i: int) -> list[Block]:
    blocks = part_blocks(msg.get("content"), f"messages[{i}].content")
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise bad("must be an array", f"messages[{i}].tool_calls")
    for j, call in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise bad("'id' and 'function.name' are required", where)
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"],
                       "input": tool_input(fn.get("arguments"), f"{where}.function.arguments")})
    return blocks


def tool_input(arguments: Any, where: str) -> dict[str, Any]:
    """OpenAI carries arguments as a JSON string, Anthropic as the parsed object."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments  # lenient: some clients send the object itself
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise bad("must be a JSON object encoded as a string", where) from None
    if not isinstance(value, dict):
        raise bad("must be a JSON object encoded as a string", where)
    return value


def tool_result(msg: dict[str, Any], i: int) -> Block:
    tool_id = msg.get("tool_call_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise bad("is required for tool messages", f"messages[{i}].tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": tool_id}
    content = msg.get("content")
    if isinstance(content, list):
        parts = part_blocks(content, f"messages[{i}].content")
        if parts:
            block["content"] = parts
    elif content:
        block["content"] = str(content)
    # An empty result is sent without content (the field is optional; empty text is rejected).
    return block
