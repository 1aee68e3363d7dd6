"""An OpenAI Responses body → the canonical chat body (stateless). Fields that need OpenAI's
stored state or its built-in tools are collected as a refusal, raised only when the request goes
to a provider that does not serve Responses itself. Decisions per field: docs/dialects.md."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequestError

# State lives at the vendor: only a native relay can honour these.
STATEFUL = ("previous_response_id", "conversation", "background")
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def native_only(param: str, what: str) -> InvalidRequestError:
    return bad(f"{what} needs a provider that serves the Responses API natively", param)


def check(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad("'model' is required", "model")
    if not isinstance(body.get("input"), str | list) or not body["input"]:
        raise bad("'input' is required: a string or an array of items", "input")


def to_chat(body: dict[str, Any]) -> tuple[dict[str, Any], InvalidRequestError | None]:
    """(canonical chat body, the refusal a translated provider must answer with, if any)."""
    refusal = next((native_only(k, f"'{k}'") for k in STATEFUL if body.get(k)), None)
    if body.get("store") is True:
        refusal = refusal or native_only("store", "'store: true' (stored responses)")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        for i, item in enumerate(items):
            refusal = add_item(item, f"input[{i}]", messages) or refusal
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    for src, dst in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                     ("parallel_tool_calls", "parallel_tool_calls"), ("user", "user")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    refusal = apply_tools(body, chat) or refusal
    apply_text_format(body.get("text"), chat)
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # response.completed carries the usage
    return chat, refusal


def add_item(item: Any, where: str, messages: list[dict[str, Any]]) -> InvalidRequestError | None:
    if not isinstance(item, dict):
        raise bad("must be an object", where)
    kind = item.get("type", "message")
    if kind == "message":
        role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise bad(f"role {item.get('role')!r} is not one of user, system, developer, assistant", f"{where}.role")
        try:
            text = content(item.get("content"), f"{where}.content", role)
        except InvalidRequestError as exc:
            # Only a translated provider must refuse it (e.g. an uploaded file id); the canonical
            # body keeps the content as JSON text for plugins (cache keys, token estimates).
            messages.append({"role": role, "content": orjson.dumps(item.get("content")).decode()})
            return native_only(exc.param or where, exc.message)
        messages.append({"role": role, "content": text})
    elif kind == "function_call":
        call = {"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":  # consecutive calls: one assistant turn
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": str(output or "")})
    elif kind == "reasoning":
        return None  # a previous turn's reasoning: chat has no place for it
    else:
        return native_only(f"{where}.type", f"input item type {kind!r}")
    return None


def content(value: Any, where: str, role: str) -> Any:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise bad("must be a string or an array of content parts", where)
    parts = [part(p, f"{where}[{j}]") for j, p in enumerate(value)]
    if role != "user" or all(p["type"] == "text" for p in parts):
        return "".join(p.get("text", "") for p in parts)  # system and assistant turns take text only
    return parts


def part(value: Any, where: str) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in TEXT_PARTS:
        return {"type": "text", "text": value.get("text") or value.get("refusal") or ""}
    if kind == "input_image" and isinstance(value.get("image_url"), str):
        image = {"url": value["image_url"]}
        if value.get("detail"):
            image["detail"] = value["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and isinstance(value.get("file_data"), str):
        file = {"file_data": value["file_data"], **({"filename": value["filename"]} if value.get("filename") else {})}
        return {"type": "file", "file": file}
    raise bad(f"content part {kind!r} cannot be translated (uploaded file ids live at the vendor)", where)


def apply_tools(body: dict[str, Any], chat: dict[str, Any]) -> InvalidRequestError | None:
    refusal = None
    functions = []
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            refusal = refusal or native_only(f"tools[{i}].type", f"built-in tool {kind!r}")
            continue
        fn = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            fn["description"] = tool["description"]
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        functions.append({"type": "function", "function": fn})
    if functions:
        chat["tools"] = functions
        choice = body.get("tool_choice")
        if isinstance(choice, str):
            chat["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    return refusal


def apply_text_format(text: Any, chat: dict[str, Any]) -> None:
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}  # type: ignore[index]
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
