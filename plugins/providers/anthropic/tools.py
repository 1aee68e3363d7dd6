"""Tools: OpenAI function tools, ``tool_choice`` and ``parallel_tool_calls`` → Anthropic's
``tools`` and ``tool_choice`` (where "no parallel calls" is a flag on the choice)."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError


def apply_tools(body: dict[str, Any], payload: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return  # tool_choice / parallel_tool_calls mean nothing without tools
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be an array.", param="tools")
    payload["tools"] = [tool_definition(t, i) for i, t in enumerate(tools)]
    choice = tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        payload["tool_choice"] = choice


def tool_definition(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidRequestError(f"tools[{i}]: only function tools are supported.", param=f"tools[{i}].type")
    fn = tool.get("function") or {}
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequestError(f"tools[{i}].function.name is required.", param=f"tools[{i}].function.name")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    if fn.get("strict") is True:
        out["strict"] = True
    if tool.get("cache_control") is not None:
        out["cache_control"] = tool["cache_control"]
    return out


def tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    simple = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(fn, dict):
        name = fn.get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise InvalidRequestError(
        "'tool_choice' must be 'auto', 'required', 'none' or a named function.", param="tool_choice"
    )
