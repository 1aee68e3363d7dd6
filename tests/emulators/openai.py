"""OpenAI emulator (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`).

`OpenAIEmulator` is also the base of every OpenAI-compatible vendor (azure.py, openai_compat.py): they
override the small hooks below instead of copying handlers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from . import openai_responses
from .base import SSE, ApiError, Call, EmulatorState, StreamReply, Vendor
from .replies import Prompt, Reply, Turn, embedding, pack_floats, plan_reply, text_of, words
from .server import add_routes, bearer_token

CREATED = 1730000000
FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls", "stop_sequence": "stop"}
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
               404: "invalid_request_error", 429: "requests"}
ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def mask(key: str | None) -> str:
    return f"{key[:3]}***{key[-2:]}" if key and len(key) > 8 else "***"


class OpenAIEmulator:
    vendor = "openai"
    prefix = "/v1"
    done_marker = True  # ends streams with `data: [DONE]`
    default_models = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small")
    roles = ("system", "assistant", "user", "function", "tool", "developer")
    embed_dims = 8  # small default keeps payloads readable; `dimensions` overrides

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.spec = Vendor(self.vendor, self.authenticate, self.error_body, self.stream_error,
                           self.success_headers)

    def create_app(self) -> web.Application:
        return add_routes(web.Application(), self.state, self.spec, self.routes(), public=self.public_paths())

    def routes(self) -> list[tuple[str, str, Any]]:
        p = self.prefix
        return [("POST", f"{p}/chat/completions", self.chat), ("POST", f"{p}/completions", self.completions),
                ("POST", f"{p}/embeddings", self.embeddings), ("GET", f"{p}/models", self.models),
                ("GET", f"{p}/models/{{model_id:.+}}", self.model),
                ("POST", f"{p}/responses", partial(openai_responses.respond, self))]

    def public_paths(self) -> tuple[str, ...]:
        return ()

    # -- auth, errors, headers -------------------------------------------------------------------
    def authenticate(self, request: web.Request, state: EmulatorState) -> None:
        key = bearer_token(request)
        if key is None:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if key != state.api_key:
            raise ApiError(401, f"Incorrect API key provided: {mask(key)}.", code="invalid_api_key")

    def error_body(self, err: ApiError) -> Any:
        etype = err.type or ERROR_TYPES.get(err.status, "server_error")
        code = err.code if err.code is not None else ERROR_CODES.get(err.status)
        return {"error": {"message": err.message, "type": etype, "param": err.param, "code": code}}

    def stream_error(self, err: ApiError) -> list[SSE]:
        return [SSE(self.error_body(err))]

    def success_headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_emu{len(self.state.requests):04d}", "openai-processing-ms": "1",
                "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
                "x-ratelimit-reset-requests": "6ms", "x-ratelimit-limit-tokens": "200000",
                "x-ratelimit-remaining-tokens": "199000", "x-ratelimit-reset-tokens": "300ms"}

    # -- request checks ----------------------------------------------------------------------------
    def resolve_model(self, call: Call) -> str:
        model = call.body.get("model")
        if not model:
            raise ApiError(400, "you must provide a model parameter", param="model")
        known = self.state.known_models
        if known is not None and model not in known:
            raise self.unknown_model(model)
        return model

    def unknown_model(self, model: str) -> ApiError:
        return ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                        code="model_not_found")

    def validate_messages(self, messages: Any) -> None:
        if messages is None:
            raise ApiError(400, "Missing required parameter: 'messages'.", param="messages",
                           code="missing_required_parameter")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                           "but got an empty array instead.", param="messages", code="empty_array")
        pending: set[str] = set()  # tool_call ids of the last assistant turn still awaiting a tool message
        for i, msg in enumerate(messages):
            role = msg.get("role") if isinstance(msg, dict) else None
            if role not in self.roles:
                allowed = ", ".join(f"'{r}'" for r in self.roles)
                raise ApiError(400, f"Invalid value: '{role}'. Supported values are: {allowed}.",
                               param=f"messages[{i}].role", code="invalid_value")
            if role == "tool":
                if msg.get("tool_call_id") not in pending:
                    raise ApiError(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                   "preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")
                pending.discard(msg["tool_call_id"])
                continue
            if pending:
                raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                               "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                               f"response messages: {', '.join(sorted(pending))}", param=f"messages.[{i}].role")
            pending = {tc.get("id") for tc in msg.get("tool_calls") or []} if role == "assistant" else set()

    def validate_chat(self, body: dict[str, Any]) -> None:
        self.validate_messages(body.get("messages"))
        if "stream_options" in body and not body.get("stream"):
            raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 128:
            raise ApiError(400, f"Invalid 'n': expected an integer between 1 and 128, got {n}.", param="n")
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            raise ApiError(400, f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                           f"but got {temperature} instead.", param="temperature", code="decimal_above_max_value")
        for i, tool in enumerate(body.get("tools") or []):
            if tool.get("type") != "function" or not (tool.get("function") or {}).get("name"):
                raise ApiError(400, f"Missing required parameter: 'tools[{i}].function.name'.",
                               param=f"tools[{i}].function.name", code="missing_required_parameter")

    def prompt(self, messages: list[dict[str, Any]]) -> Prompt:
        roles = {"developer": "system", "function": "tool"}
        return Prompt([Turn(roles.get(m["role"], m["role"]), text_of(m.get("content"))) for m in messages])

    def plan(self, body: dict[str, Any], prompt: Prompt, stop: Any = None) -> Reply:
        tools = [(t["function"]["name"], t["function"].get("parameters") or {}) for t in body.get("tools") or []]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice = (choice.get("function") or {}).get("name")
        stop = body.get("stop") if stop is None else stop
        return plan_reply(self.state, self.vendor, prompt, tools=tools, tool_choice=choice,
                          max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
                          stop=[stop] if isinstance(stop, str) else stop, id_prefix="call_")

    # -- chat --------------------------------------------------------------------------------------
    async def chat(self, call: Call) -> Any:
        body = call.body
        model = self.resolve_model(call)
        self.validate_chat(body)
        reply = self.plan(body, self.prompt(body["messages"]))
        n = body.get("n", 1)
        if body.get("stream"):
            return StreamReply(self.chat_events(body, model, reply, n))
        choices = [{"index": i, "message": self.message(reply), "logprobs": None,
                    "finish_reason": FINISH[reply.finish]} for i in range(n)]
        resp = {"id": self.completion_id(), "object": "chat.completion", "created": CREATED, "model": model,
                "choices": choices, "usage": self.usage(reply, n), "service_tier": "default",
                "system_fingerprint": "fp_emulator"}
        return self.decorate_response(resp, reply, body)

    def completion_id(self, prefix: str = "chatcmpl-") -> str:
        return f"{prefix}emu{len(self.state.requests):04d}"

    def message(self, reply: Reply) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None,
                               "annotations": []}
        if reply.tool_call is not None:
            tc = reply.tool_call
            msg["tool_calls"] = [{"id": tc.id, "type": "function",
                                  "function": {"name": tc.name, "arguments": tc.arguments}}]
        return msg

    def usage(self, reply: Reply, n: int = 1) -> dict[str, Any]:
        completion = reply.completion_tokens * n
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
                "total_tokens": reply.prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    def decorate_response(self, resp: dict[str, Any], reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        return resp

    def chat_deltas(self, reply: Reply) -> list[tuple[dict[str, Any], str | None]]:
        """(delta, finish_reason) of one choice, in order."""
        tc = reply.tool_call
        if tc is None:
            first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
            body = [{"content": d} for d in reply.deltas]
        else:
            first = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"index": 0, "id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": ""}}]}
            body = [{"tool_calls": [{"index": 0, "function": {"arguments": f}}]} for f in tc.fragments]
        return [(first, None), *((d, None) for d in body), ({}, FINISH[reply.finish])]

    def chunk_choice(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def chat_events(self, body: dict[str, Any], model: str, reply: Reply, n: int) -> list[SSE]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": self.completion_id(), "object": "chat.completion.chunk", "created": CREATED,
                "model": model, "system_fingerprint": "fp_emulator"}
        if include_usage:
            base["usage"] = None  # OpenAI sends an explicit null on every chunk but the usage one
        # One choice per chunk, choices interleaved, as OpenAI streams n > 1.
        chunks = [{**base, "choices": [self.chunk_choice(i, delta, finish)]}
                  for delta, finish in self.chat_deltas(reply) for i in range(n)]
        chunks = self.finish_chunks(chunks, base, reply, n, include_usage)
        return self.to_events(chunks)

    def finish_chunks(self, chunks: list[dict[str, Any]], base: dict[str, Any], reply: Reply, n: int,
                      include_usage: bool) -> list[dict[str, Any]]:
        """Vendor hook for usage placement and chunk post-processing."""
        if include_usage:
            chunks.append({**base, "choices": [], "usage": self.usage(reply, n)})
        return chunks

    def to_events(self, chunks: list[dict[str, Any]]) -> list[SSE]:
        events = [SSE(c) for c in chunks]
        return [*events, SSE("[DONE]", terminal=True)] if self.done_marker else events

    # -- legacy completions, embeddings, models ---------------------------------------------------
    async def completions(self, call: Call) -> Any:
        body = call.body
        model = self.resolve_model(call)
        if "prompt" not in body:
            raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt",
                           code="missing_required_parameter")
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        prompts = [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompts]
        replies = [self.plan({"max_tokens": body.get("max_tokens", 16), "stop": body.get("stop")},
                             Prompt([Turn("user", p)])) for p in prompts]
        cid = self.completion_id("cmpl-")
        usage = self.usage(replies[0])
        usage.update(prompt_tokens=sum(r.prompt_tokens for r in replies),
                     completion_tokens=sum(r.completion_tokens for r in replies))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": cid, "object": "text_completion", "created": CREATED, "model": model}
        if not body.get("stream"):
            choices = [{"text": r.text, "index": i, "logprobs": None, "finish_reason": FINISH[r.finish]}
                       for i, r in enumerate(replies)]
            return {**base, "choices": choices, "usage": usage}
        chunks = [{**base, "choices": [{"text": d, "index": i, "logprobs": None, "finish_reason": None}]}
                  for i, r in enumerate(replies) for d in r.deltas]
        chunks += [{**base, "choices": [{"text": "", "index": i, "logprobs": None,
                                         "finish_reason": FINISH[r.finish]}]} for i, r in enumerate(replies)]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        return StreamReply(self.to_events(chunks))

    async def embeddings(self, call: Call) -> Any:
        body = call.body
        model = self.resolve_model(call)
        raw = body.get("input")
        items = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        if raw is None or raw == "" or raw == [] or any(i in ("", None) for i in items):
            raise ApiError(400, "'$.input' is invalid. Please check the API reference: "
                           "https://platform.openai.com/docs/api-reference.", param="input")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise ApiError(400, f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                           param="encoding_format", code="invalid_value")
        texts = [i if isinstance(i, str) else " ".join(map(str, i)) for i in items]
        dims = body.get("dimensions") or self.embed_dims
        data = []
        for i, text in enumerate(texts):
            vec = embedding(text, dims)
            data.append({"object": "embedding", "index": i,
                         "embedding": pack_floats(vec) if fmt == "base64" else vec})
        tokens = sum(words(t) for t in texts)
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def model_entry(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "system"}

    async def models(self, call: Call) -> Any:
        ids = self.state.known_models or self.default_models
        return {"object": "list", "data": [self.model_entry(m) for m in ids]}

    async def model(self, call: Call) -> Any:
        model_id = call.request.match_info["model_id"]
        if model_id not in (self.state.known_models or self.default_models):
            raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return self.model_entry(model_id)


def create_app(state: EmulatorState, *, flavor: str = "openai", deployments: Any = None) -> web.Application:
    """flavor "openai" (default) or "azure" (`deployments`: names, or {deployment: model}; see azure.py)."""
    if flavor == "azure":
        from .azure import AzureEmulator  # azure.py subclasses OpenAIEmulator, so import it lazily

        return AzureEmulator(state, deployments).create_app()
    if flavor != "openai":
        raise ValueError(f"unknown flavor {flavor!r}")
    return OpenAIEmulator(state).create_app()
