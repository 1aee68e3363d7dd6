"""Cohere v2 emulator: `POST /v2/chat`, `POST /v2/embed`, `GET /v1/models` (PROVIDERS.md §4)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import SSE, ApiError, Call, EmulatorState, StreamReply, Vendor
from .replies import Prompt, Reply, Turn, embedding, pack_floats, pieces, plan_reply, text_of, words
from .server import add_routes, bearer_token

FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "tool": "TOOL_CALL", "stop_sequence": "STOP_SEQUENCE"}
# Fields of the v2 chat request (SDK signature). Unknown ones are refused, which catches OpenAI names
# (top_p, stop, n, user…) an adapter forgot to translate. (Strictness of the live API: unverified.)
CHAT_FIELDS = {"model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
               "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
               "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "priority", "stream"}
INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}
EMBEDDING_TYPES = {"float", "int8", "uint8", "binary", "ubinary", "base64"}
PREAMBLE_TOKENS = 64  # usage.tokens (raw) = billed units + Cohere's hidden system preamble
MODELS = {"command-a-03-2025": ["chat"], "command-r-plus-08-2024": ["chat"], "embed-v4.0": ["embed"],
          "embed-english-v3.0": ["embed"]}


def cohere_id(state: EmulatorState) -> str:
    return f"00000000-0000-4000-8000-{len(state.requests):012d}"


def authenticate(request: web.Request, state: EmulatorState) -> None:
    token = bearer_token(request)
    if token != state.api_key:
        raise ApiError(401, "no api key supplied" if token is None else "invalid api token")


def error_body(err: ApiError) -> Any:
    return {"id": "00000000-0000-4000-8000-00000000e770", "message": err.message}


def stream_error(err: ApiError) -> list[SSE]:
    delta = {"finish_reason": "ERROR", "error": err.message,
             "usage": {"billed_units": {"input_tokens": 0, "output_tokens": 0}}}
    return [SSE({"type": "message-end", "delta": delta}, event="message-end")]


def invalid(message: str) -> ApiError:
    return ApiError(400, f"invalid request: {message}")


def validate_chat(body: dict[str, Any]) -> None:
    extra = sorted(set(body) - CHAT_FIELDS)
    if extra:
        raise invalid(f"unknown field: parameter {extra[0]} is not a valid field")
    if not body.get("model"):
        raise invalid("model must be specified")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages cannot be empty")
    call_ids: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise invalid(f"messages[{i}].role must be one of system, user, assistant, tool; got {role!r}")
        call_ids |= {tc.get("id") for tc in msg.get("tool_calls") or []}
        if role == "tool" and msg.get("tool_call_id") not in call_ids:
            raise invalid(f"messages[{i}]: tool message tool_call_id {msg.get('tool_call_id')!r} does not match "
                          "any tool call of a previous assistant message")
    checks = [("p", 0.01, 0.99), ("k", 0, 500), ("temperature", 0, 5), ("frequency_penalty", 0, 1),
              ("presence_penalty", 0, 1)]
    for name, low, high in checks:
        value = body.get(name)
        if value is not None and not low <= value <= high:
            raise invalid(f"{name} must be between {low} and {high}, got {value}")
    if len(body.get("stop_sequences") or []) > 5:
        raise invalid("stop_sequences can contain at most 5 items")
    if body.get("tool_choice") not in (None, "REQUIRED", "NONE"):
        raise invalid("tool_choice must be one of REQUIRED, NONE")


def usage(reply: Reply) -> dict[str, Any]:
    return {"billed_units": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
            "tokens": {"input_tokens": reply.prompt_tokens + PREAMBLE_TOKENS,
                       "output_tokens": reply.completion_tokens}, "cached_tokens": 0}


def chat_events(cid: str, reply: Reply) -> list[SSE]:
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    raw: list[dict[str, Any]] = [{"id": cid, "type": "message-start", "delta": {"message": start}}]
    tc = reply.tool_call
    if tc is None:
        raw.append({"type": "content-start", "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}}})
        raw += [{"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}}
                for p in reply.deltas]
        raw.append({"type": "content-end", "index": 0})
    else:
        raw += [{"type": "tool-plan-delta", "delta": {"message": {"tool_plan": p}}} for p in pieces(tc.plan)]
        call = {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": ""}}
        raw.append({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}})
        raw += [{"type": "tool-call-delta", "index": 0,
                 "delta": {"message": {"tool_calls": {"function": {"arguments": f}}}}} for f in tc.fragments]
        raw.append({"type": "tool-call-end", "index": 0})
    end = {"type": "message-end", "delta": {"finish_reason": FINISH[reply.finish], "usage": usage(reply)}}
    return [*(SSE(e, event=e["type"]) for e in raw), SSE(end, event="message-end", terminal=True)]


async def chat(call: Call) -> Any:
    body = call.body
    validate_chat(body)
    known = call.state.known_models
    if known is not None and body["model"] not in known:
        raise ApiError(404, f"model '{body['model']}' not found, make sure the correct model ID was used")
    turns = [Turn(m["role"], text_of(m.get("content"))) for m in body["messages"]]
    tools = [(t["function"]["name"], t["function"].get("parameters") or {}) for t in body.get("tools") or []]
    choice = "none" if body.get("tool_choice") == "NONE" else None
    reply = plan_reply(call.state, "cohere", Prompt(turns), tools=tools, tool_choice=choice,
                       max_tokens=body.get("max_tokens"), stop=body.get("stop_sequences"), id_prefix="tool_emu")
    cid = cohere_id(call.state)
    if body.get("stream"):
        return StreamReply(chat_events(cid, reply))
    message: dict[str, Any] = {"role": "assistant"}
    if reply.tool_call is not None:
        tc = reply.tool_call
        message |= {"tool_plan": tc.plan, "tool_calls": [
            {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}]}
    else:
        message["content"] = [{"type": "text", "text": reply.text}]
    return {"id": cid, "finish_reason": FINISH[reply.finish], "message": message, "usage": usage(reply)}


def encode(vec: list[float], kind: str) -> Any:
    """One embedding in each of Cohere's representations, all derived from the float vector."""
    if kind == "float":
        return vec
    if kind == "base64":
        return pack_floats(vec)
    if kind in ("int8", "uint8"):
        return [round(v * 127) + (128 if kind == "uint8" else 0) for v in vec]
    bits = [1 if v > 0 else 0 for v in vec] + [0] * (-len(vec) % 8)
    packed = [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)]
    return packed if kind == "ubinary" else [b - 128 for b in packed]


async def embed(call: Call) -> Any:
    body = call.body
    model = body.get("model")
    if not model:
        raise invalid("model must be specified")
    input_type = body.get("input_type")
    if input_type is None and "v2" not in model:
        raise invalid("valid input_type must be provided with the provided model")
    if input_type is not None and input_type not in INPUT_TYPES:
        raise invalid(f"input_type must be one of {', '.join(sorted(INPUT_TYPES))}")
    texts = body.get("texts") or [text_of(i.get("content")) for i in body.get("inputs") or []]
    if not texts:
        raise invalid("one of texts, images or inputs must be provided")
    if len(texts) > 96:
        raise invalid(f"too many texts: maximum is 96, got {len(texts)}")
    types = body.get("embedding_types") or ["float"]
    bad = [t for t in types if t not in EMBEDDING_TYPES]
    if bad:
        raise invalid(f"embedding_types must be one of {', '.join(sorted(EMBEDDING_TYPES))}; got {bad[0]}")
    vectors = [embedding(t, body.get("output_dimension") or 8) for t in texts]
    return {"id": cohere_id(call.state), "response_type": "embeddings_by_type",
            "embeddings": {kind: [encode(v, kind) for v in vectors] for kind in types}, "texts": texts,
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"input_tokens": sum(words(t) for t in texts)}}}


async def models(call: Call) -> Any:
    endpoint = call.request.query.get("endpoint")
    names = call.state.known_models or list(MODELS)
    data = [{"name": m, "endpoints": MODELS.get(m, ["chat"]), "finetuned": False, "context_length": 128000,
             "tokenizer_url": None, "default_endpoints": MODELS.get(m, ["chat"]), "features": ["tools"]}
            for m in names]
    return {"models": [m for m in data if endpoint is None or endpoint in m["endpoints"]],
            "next_page_token": None}


def create_app(state: EmulatorState) -> web.Application:
    vendor = Vendor("cohere", authenticate, error_body, stream_error)
    table = [("POST", "/v2/chat", chat), ("POST", "/v2/embed", embed), ("GET", "/v1/models", models)]
    return add_routes(web.Application(), state, vendor, table)
