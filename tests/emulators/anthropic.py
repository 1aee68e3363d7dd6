"""Anthropic Messages API emulator: `POST /v1/messages`, `GET /v1/models` (PROVIDERS.md §2)."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from .base import SSE, ApiError, Call, EmulatorState, StreamReply, Vendor
from .replies import Prompt, Reply, Turn, pieces, plan_reply, text_of
from .server import add_routes, bearer_token

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use", "stop_sequence": "stop_sequence"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               529: "overloaded_error"}
# Top-level request fields the API knows; anything else is "Extra inputs are not permitted" (catches
# OpenAI-only fields such as n, stop, user, response_format leaking through an adapter).
FIELDS = {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
          "top_k", "top_p", "tools", "tool_choice", "thinking", "service_tier", "container", "cache_control",
          "diagnostics", "inference_geo", "output_config", "speed", "context_management", "mcp_servers"}
BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
               "search_result", "server_tool_use", "web_search_tool_result"}
DEFAULT_MODELS = ("claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5-20251001")


def authenticate(request: web.Request, state: EmulatorState, *, accept_bearer: bool = False) -> None:
    key = request.headers.get("x-api-key")
    if key is None and accept_bearer:
        key = bearer_token(request)
    if key != state.api_key:
        raise ApiError(401, "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        raise ApiError(400, "anthropic-version: header is required")


def error_body(err: ApiError) -> Any:
    etype = err.type or ERROR_TYPES.get(err.status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": err.message}, "request_id": "req_emulator"}


def stream_error(err: ApiError) -> list[SSE]:
    error = {"type": err.type or "overloaded_error", "message": err.message}
    return [SSE({"type": "error", "error": error}, event="error")]


def blocks(content: Any) -> list[dict[str, Any]]:
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: Field required" if messages is None else
                       "messages: at least one message is required")
    prev_tool_ids: set[str] = set()
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if role == "system":
            raise ApiError(400, 'messages: Unexpected role "system". The Messages API accepts a top-level '
                           '`system` parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            raise ApiError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ApiError(400, 'messages: first message must use the "user" role' if i == 0 else
                           f'messages: roles must alternate between "user" and "assistant", but found multiple '
                           f'"{role}" roles in a row')
        if content in ("", [], None) and not (role == "assistant" and i == len(messages) - 1):
            raise ApiError(400, "messages: all messages must have non-empty content except for the optional "
                           "final assistant message")
        items = blocks(content)
        for j, block in enumerate(items):
            if block.get("type") not in BLOCK_TYPES:
                raise ApiError(400, f"messages.{i}.content.{j}.type: Input tag '{block.get('type')}' found "
                               "using 'type' does not match any of the expected tags")
            if block["type"] == "text" and not block.get("text") and isinstance(content, list):
                raise ApiError(400, f"messages.{i}.content.{j}.text: text content blocks must be non-empty")
        results = {b.get("tool_use_id"): j for j, b in enumerate(items) if b["type"] == "tool_result"}
        for tool_id, j in results.items():
            if tool_id not in prev_tool_ids:
                raise ApiError(400, f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                               f"blocks: {tool_id}. Each `tool_result` block must have a corresponding "
                               "`tool_use` block in the previous message.")
        missing = sorted(prev_tool_ids - set(results))
        if missing:
            raise ApiError(400, f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                           f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                           "corresponding `tool_result` block in the next message.")
        prev_tool_ids = {b.get("id") for b in items if b["type"] == "tool_use"}


def validate(body: dict[str, Any]) -> None:
    extra = sorted(set(body) - FIELDS)
    if extra:
        raise ApiError(400, f"{extra[0]}: Extra inputs are not permitted")
    for name in ("model", "max_tokens"):
        if name not in body:
            raise ApiError(400, f"{name}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise ApiError(400, "max_tokens: Input should be greater than or equal to 1")
    validate_messages(body.get("messages"))
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise ApiError(400, "temperature: Input should be less than or equal to 1")
    for i, tool in enumerate(body.get("tools") or []):
        if "name" not in tool or ("input_schema" not in tool and "type" not in tool):
            raise ApiError(400, f"tools.{i}.input_schema: Field required")
    choice = body.get("tool_choice")
    if choice is not None and (choice.get("type") not in ("auto", "any", "none", "tool")
                               or (choice["type"] == "tool" and not choice.get("name"))):
        raise ApiError(400, "tool_choice: Input should be a valid tool choice ('auto', 'any', 'none', 'tool')")


def prompt_of(body: dict[str, Any]) -> Prompt:
    turns = [Turn("system", text_of(body["system"]))] if body.get("system") else []
    for msg in body["messages"]:
        items = blocks(msg["content"])
        if msg["role"] == "user" and any(b["type"] == "tool_result" for b in items):
            turns.append(Turn("tool", text_of([b for b in items if b["type"] == "tool_result"])))
        else:
            turns.append(Turn(msg["role"], text_of(items)))
    return Prompt(turns)


def plan(call: Call) -> Reply:
    body = call.body
    choice = body.get("tool_choice") or {}
    forced = "none" if choice.get("type") == "none" else choice.get("name")
    tools = [(t["name"], t.get("input_schema") or {}) for t in body.get("tools") or []]
    return plan_reply(call.state, "anthropic", prompt_of(body), tools=tools, tool_choice=forced,
                      max_tokens=body["max_tokens"], stop=body.get("stop_sequences"), id_prefix="toolu_emu")


def content_blocks(reply: Reply) -> list[dict[str, Any]]:
    tc = reply.tool_call
    if tc is None:
        return [{"type": "text", "text": reply.text}] if reply.text else []
    return [{"type": "text", "text": tc.plan}, {"type": "tool_use", "id": tc.id, "name": tc.name, "input": tc.input}]


def events(message: dict[str, Any], reply: Reply) -> list[SSE]:
    """The documented order: message_start, per block start(/ping)/deltas/stop, message_delta, message_stop."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**message["usage"], "output_tokens": 1}}
    out = [SSE({"type": "message_start", "message": start}, event="message_start")]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            head = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        else:
            assert reply.tool_call is not None
            head = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": f} for f in reply.tool_call.fragments]
        out.append(SSE({"type": "content_block_start", "index": index, "content_block": head},
                       event="content_block_start"))
        if index == 0:
            out.append(SSE({"type": "ping"}, event="ping"))
        out += [SSE({"type": "content_block_delta", "index": index, "delta": d}, event="content_block_delta")
                for d in deltas]
        out.append(SSE({"type": "content_block_stop", "index": index}, event="content_block_stop"))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    out.append(SSE({"type": "message_delta", "delta": delta,
                    "usage": {"output_tokens": message["usage"]["output_tokens"]}}, event="message_delta"))
    out.append(SSE({"type": "message_stop"}, event="message_stop", terminal=True))
    return out


async def messages(call: Call) -> Any:
    validate(call.body)
    model = call.body["model"]
    known = call.state.known_models
    if known is not None and model not in known:
        raise ApiError(404, f"model: {model}")
    reply = plan(call)
    message = {"id": f"msg_emu{len(call.state.requests):04d}", "type": "message", "role": "assistant",
               "model": model, "content": content_blocks(reply), "stop_reason": STOP_REASONS[reply.finish],
               "stop_sequence": reply.stop_sequence,
               "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                         "service_tier": "standard"}}
    return StreamReply(events(message, reply)) if call.body.get("stream") else message


async def models(call: Call) -> Any:
    """Cursor pagination as the API does it: limit, after_id / before_id, has_more, first_id, last_id."""
    ids = list(call.state.known_models or DEFAULT_MODELS)
    query = call.request.query
    limit = int(query.get("limit", 20))
    if "after_id" in query and query["after_id"] in ids:
        ids = ids[ids.index(query["after_id"]) + 1 :]
    elif "before_id" in query and query["before_id"] in ids:
        ids = ids[: ids.index(query["before_id"])][-limit:]
    page = ids[:limit]
    data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
             "created_at": "2025-09-29T00:00:00Z", "lifecycle": "active"} for m in page]
    return {"data": data, "has_more": len(ids) > limit, "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None}


def success_headers() -> dict[str, str]:
    limits = {"requests": "4000", "tokens": "400000", "input-tokens": "200000", "output-tokens": "80000"}
    headers = {"request-id": "req_emulator", "anthropic-organization-id": "org-emulator"}
    for kind, limit in limits.items():
        headers |= {f"anthropic-ratelimit-{kind}-limit": limit, f"anthropic-ratelimit-{kind}-remaining": limit,
                    f"anthropic-ratelimit-{kind}-reset": "2025-01-01T00:00:00Z"}
    return headers


def create_app(state: EmulatorState, *, accept_bearer: bool = False) -> web.Application:
    """`accept_bearer`: also take the key from `Authorization: Bearer` (what anthropic SDK 2.x sends by
    default). Off by default: PROVIDERS.md specifies `x-api-key`, which the gateway's adapter must send."""
    vendor = Vendor("anthropic", partial(authenticate, accept_bearer=accept_bearer), error_body, stream_error,
                    success_headers)
    table = [("POST", "/v1/messages", messages), ("GET", "/v1/models", models)]
    return add_routes(web.Application(), state, vendor, table)
