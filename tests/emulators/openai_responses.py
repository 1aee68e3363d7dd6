"""OpenAI's Responses API on the OpenAI emulator: ``POST /v1/responses`` (stateless; ``store``
and ``previous_response_id`` are accepted and ignored). Same deterministic replies as chat; the
stream has every event's ``sequence_number`` and the item / content-part lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import SSE, ApiError, Call, StreamReply
from .replies import Prompt, Reply, Turn, plan_reply, text_of

if TYPE_CHECKING:
    from .openai import OpenAIEmulator

CREATED = 1730000000
ROLES = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}


def prompt_of(body: dict[str, Any]) -> Prompt:
    turns = [Turn("system", body["instructions"])] if body.get("instructions") else []
    items = body.get("input")
    if isinstance(items, str):
        return Prompt([*turns, Turn("user", items)])
    if not isinstance(items, list) or not items:
        raise ApiError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    calls: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message":
            turns.append(Turn(ROLES[item["role"]], text_of(item.get("content"))))  # type: ignore[arg-type]
        elif kind == "function_call":
            calls.add(item["call_id"])
            turns.append(Turn("assistant", ""))
        elif kind == "function_call_output":
            if item.get("call_id") not in calls:
                raise ApiError(400, f"No tool call found for function call output with call_id {item.get('call_id')}.",
                               param=f"input[{i}]")
            turns.append(Turn("tool", str(item.get("output"))))
    return Prompt(turns)


def usage(reply: Reply) -> dict[str, Any]:
    return {"input_tokens": reply.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.total_tokens}


def output(reply: Reply, n: int) -> list[dict[str, Any]]:
    if reply.tool_call is not None:
        tc = reply.tool_call
        return [{"id": f"fc_emu{n:04d}", "type": "function_call", "status": "completed", "call_id": tc.id,
                 "name": tc.name, "arguments": tc.arguments}]
    return [{"id": f"msg_emu{n:04d}", "type": "message", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}]}]


def response(body: dict[str, Any], model: str, reply: Reply, n: int, status: str) -> dict[str, Any]:
    incomplete = reply.finish == "length" and status != "in_progress"
    return {"id": f"resp_emu{n:04d}", "object": "response", "created_at": CREATED, "model": model,
            "status": "incomplete" if incomplete else status,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None, "error": None,
            "output": output(reply, n) if status != "in_progress" else [], "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "store": body.get("store", True), "usage": usage(reply) if status != "in_progress" else None}


def events(body: dict[str, Any], model: str, reply: Reply, n: int) -> list[SSE]:
    final = response(body, model, reply, n, "completed")
    item = final["output"][0]
    where = {"item_id": item["id"], "output_index": 0}
    out: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": response(body, model, reply, n,
                                                                                         "in_progress")})]
    if reply.tool_call is not None:
        out.append(("response.output_item.added", {"output_index": 0, "item": {**item, "arguments": "",
                                                                              "status": "in_progress"}}))
        out += [("response.function_call_arguments.delta", {**where, "delta": f}) for f in reply.tool_call.fragments]
        out.append(("response.function_call_arguments.done", {**where, "arguments": item["arguments"]}))
    else:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        out.append(("response.output_item.added", {"output_index": 0, "item": {**item, "content": [],
                                                                              "status": "in_progress"}}))
        out.append(("response.content_part.added", {**where, "content_index": 0, "part": part}))
        out += [("response.output_text.delta", {**where, "content_index": 0, "delta": d, "logprobs": []})
                for d in reply.deltas]
        out.append(("response.output_text.done", {**where, "content_index": 0, "text": reply.text, "logprobs": []}))
        out.append(("response.content_part.done", {**where, "content_index": 0, "part": item["content"][0]}))
    out.append(("response.output_item.done", {"output_index": 0, "item": item}))
    out.append((f"response.{final['status']}", {"response": final}))
    return [SSE({"type": name, "sequence_number": i, **data}, event=name, terminal=i == len(out) - 1)
            for i, (name, data) in enumerate(out)]


async def respond(emu: OpenAIEmulator, call: Call) -> Any:
    body = call.body
    model = emu.resolve_model(call)
    tools = [(t["name"], t.get("parameters") or {}) for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    reply = plan_reply(emu.state, emu.vendor, prompt_of(body), tools=tools,
                       tool_choice=choice.get("name") if isinstance(choice, dict) else choice,
                       max_tokens=body.get("max_output_tokens"))
    n = len(emu.state.requests)
    if body.get("stream"):
        return StreamReply(events(body, model, reply, n))
    return response(body, model, reply, n, "completed")
