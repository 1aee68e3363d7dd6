"""OpenAI-compatible vendors with their quirks: perplexity, grok (xAI), blackbox, openrouter.

Each is an `OpenAIEmulator` subclass overriding only the hooks where the vendor differs (PROVIDERS.md §5-8).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import SSE, ApiError, EmulatorState
from .openai import CREATED, OpenAIEmulator, mask
from .replies import Prompt, Reply, pieces, words
from .server import bearer_token

CITATIONS = ["https://example.com/emulator/source-1", "https://example.com/emulator/source-2"]
SEARCH_RESULTS = [{"title": f"Emulator source {i}", "url": url, "date": "2024-05-01",
                   "last_updated": "2025-01-10", "snippet": "Deterministic snippet.", "source": "web"}
                  for i, url in enumerate(CITATIONS, 1)]
FINISH_STOP = {"stop": "stop", "length": "length", "tool": "stop", "stop_sequence": "stop"}  # no tool calls


class PerplexityEmulator(OpenAIEmulator):
    """No /v1 prefix, chat only; chunks carry delta + accumulated message + cumulative usage; no [DONE].

    `tools`: the Sonar API does not document them and third-party integrations report them silently
    dropped, so by default they are ignored (plain text reply); `reject_tools=True` answers 400 instead.
    """

    vendor = "perplexity"
    prefix = ""
    done_marker = False
    default_models = ("sonar", "sonar-pro", "sonar-reasoning", "sonar-reasoning-pro", "sonar-deep-research")
    roles = ("system", "user", "assistant")

    def __init__(self, state: EmulatorState, *, reject_tools: bool = False) -> None:
        super().__init__(state)
        self.reject_tools = reject_tools

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/chat/completions", self.chat)]

    def authenticate(self, request: web.Request, state: EmulatorState) -> None:
        if bearer_token(request) != state.api_key:
            raise ApiError(401, "Invalid API key", type="authentication_error")

    def error_body(self, err: ApiError) -> Any:
        types = {400: "bad_request", 401: "authentication_error", 429: "rate_limit_error"}
        return {"error": {"message": err.message, "type": err.type or types.get(err.status, "server_error"),
                          "code": err.status}}

    def unknown_model(self, model: str) -> ApiError:
        return ApiError(400, f"Invalid model '{model}'. Permitted models can be found in the documentation at "
                        "https://docs.perplexity.ai/getting-started/models.", type="invalid_model")

    def validate_chat(self, body: dict[str, Any]) -> None:
        super().validate_chat(body)
        roles = [m["role"] for m in body["messages"] if m["role"] != "system"]
        if any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)) or len(roles) % 2 == 0:
            raise ApiError(400, "After the (optional) system message(s), user and assistant roles should be "
                           "alternating.", type="invalid_message")
        if body.get("tools") and self.reject_tools:
            raise ApiError(400, "Tool calling is not supported by this model.", param="tools")

    def plan(self, body: dict[str, Any], prompt: Prompt, stop: Any = None) -> Reply:
        return super().plan({k: v for k, v in body.items() if k not in ("tools", "stop")}, prompt, stop=[])

    def usage(self, reply: Reply, n: int = 1) -> dict[str, Any]:
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.total_tokens, "search_context_size": "low", "citation_tokens": 0,
                "num_search_queries": 1, "reasoning_tokens": 0,
                "cost": {"input_tokens_cost": 0.0, "output_tokens_cost": 0.0, "request_cost": 0.005,
                         "total_cost": 0.005}}

    def decorate_response(self, resp: dict[str, Any], reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        return {**resp, "citations": CITATIONS, "search_results": SEARCH_RESULTS}

    def chat_deltas(self, reply: Reply) -> list[tuple[dict[str, Any], str | None]]:
        deltas = [({"role": "assistant", "content": d}, None) for d in reply.deltas]
        return [*deltas, ({"role": "assistant", "content": ""}, FINISH_STOP[reply.finish])]

    def finish_chunks(self, chunks: list[dict[str, Any]], base: dict[str, Any], reply: Reply, n: int,
                      include_usage: bool) -> list[dict[str, Any]]:
        text = ""
        for chunk in chunks:  # each chunk repeats the text so far, its usage and the sources
            choice = chunk["choices"][0]
            text += choice["delta"]["content"]
            choice["message"] = {"role": "assistant", "content": text}
            del choice["logprobs"]
            so_far = Reply(text, reply.finish, reply.prompt_tokens, words(text))
            chunk.update(usage=self.usage(so_far), citations=CITATIONS, search_results=SEARCH_RESULTS)
            chunk.pop("system_fingerprint")
        return chunks

    def to_events(self, chunks: list[dict[str, Any]]) -> list[SSE]:
        events = super().to_events(chunks)
        events[-1].terminal = True  # the finish chunk is Perplexity's only end marker
        return events


GRPC_CODES = {400: "Client specified an invalid argument", 401: "The caller does not have permission",
              403: "The caller does not have permission", 404: "Some requested entity was not found",
              429: "Too many requests", 500: "Internal error", 503: "The service is currently unavailable"}


class GrokEmulator(OpenAIEmulator):
    """xAI: flat `{code, error}` errors, a bad key is a 400, reasoning models stream `reasoning_content`
    and reject presence_penalty/frequency_penalty/stop; usage rides on the finish chunk."""

    vendor = "grok"
    default_models = ("grok-4", "grok-3-mini", "grok-4-fast-non-reasoning")

    def authenticate(self, request: web.Request, state: EmulatorState) -> None:
        key = bearer_token(request)
        if key != state.api_key:
            raise ApiError(400, f"Incorrect API key provided: {mask(key)}. You can obtain an API key from "
                           "https://console.x.ai.")

    def error_body(self, err: ApiError) -> Any:
        return {"code": err.code or GRPC_CODES.get(err.status, "Internal error"), "error": err.message}

    @staticmethod
    def reasons(model: str) -> bool:
        return "non-reasoning" not in model

    def validate_chat(self, body: dict[str, Any]) -> None:
        super().validate_chat(body)
        bad = [k for k in ("presence_penalty", "frequency_penalty", "stop") if k in body]
        if bad and self.reasons(body["model"]):
            raise ApiError(400, f"Argument not supported on this model: {bad[0]}")

    def plan(self, body: dict[str, Any], prompt: Prompt, stop: Any = None) -> Reply:
        reply = super().plan(body, prompt, stop)
        if self.reasons(body.get("model", "")):
            reply.extra["reasoning"] = f"Thinking about: {prompt.last_user_text}"
        return reply

    def usage(self, reply: Reply, n: int = 1) -> dict[str, Any]:
        usage = super().usage(reply, n)
        reasoning = words(reply.extra.get("reasoning", ""))
        usage["total_tokens"] += reasoning  # xAI's total includes the hidden reasoning tokens
        usage["completion_tokens_details"]["reasoning_tokens"] = reasoning
        usage["prompt_tokens_details"]["text_tokens"] = reply.prompt_tokens
        return {**usage, "num_sources_used": 0}

    def decorate_response(self, resp: dict[str, Any], reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        if "reasoning" in reply.extra:
            for choice in resp["choices"]:
                choice["message"]["reasoning_content"] = reply.extra["reasoning"]
        return resp

    def chat_deltas(self, reply: Reply) -> list[tuple[dict[str, Any], str | None]]:
        deltas = super().chat_deltas(reply)
        thoughts = [({"reasoning_content": p}, None) for p in pieces(reply.extra.get("reasoning", ""))]
        return [deltas[0], *thoughts, *deltas[1:]]

    def finish_chunks(self, chunks: list[dict[str, Any]], base: dict[str, Any], reply: Reply, n: int,
                      include_usage: bool) -> list[dict[str, Any]]:
        chunks[-1]["usage"] = self.usage(reply, n)
        return chunks


class BlackboxEmulator(OpenAIEmulator):
    """`/chat/completions` without /v1; LiteLLM-style bodies with "None" strings and
    `provider_specific_fields`; the response model drops the `blackboxai/` prefix."""

    vendor = "blackbox"
    prefix = ""
    default_models = ("blackboxai/openai/gpt-4o", "blackboxai/anthropic/claude-sonnet-4.5")

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/chat/completions", self.chat)]

    def error_body(self, err: ApiError) -> Any:
        etype = err.type or ("auth_error" if err.status == 401 else "invalid_request_error")
        return {"error": {"message": err.message, "type": etype, "param": err.param or "None",
                          "code": str(err.status)}}

    def resolve_model(self, call: Any) -> str:
        return super().resolve_model(call).removeprefix("blackboxai/")

    def decorate_response(self, resp: dict[str, Any], reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        for choice in resp["choices"]:  # documented example serialises nulls as the string "None"
            msg = choice["message"]
            choice["message"] = {"content": msg["content"], "role": "assistant",
                                 "tool_calls": msg.get("tool_calls", "None"), "function_call": "None"}
            choice["provider_specific_fields"] = {"native_finish_reason": choice["finish_reason"]}
        return {**resp, "system_fingerprint": "None", "provider": "OpenAI"}

    def finish_chunks(self, chunks: list[dict[str, Any]], base: dict[str, Any], reply: Reply, n: int,
                      include_usage: bool) -> list[dict[str, Any]]:
        chunks[-1]["usage"] = self.usage(reply, n)
        return chunks


class OpenRouterEmulator(OpenAIEmulator):
    """`/api/v1`; `: OPENROUTER PROCESSING` comments, `native_finish_reason`, usage with `cost` on every
    stream, int error codes, in-stream errors as a chunk with `finish_reason: "error"`; /models is public."""

    vendor = "openrouter"
    prefix = "/api/v1"
    default_models = ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5", "openai/text-embedding-3-small")

    def public_paths(self) -> tuple[str, ...]:
        return (f"{self.prefix}/models",)

    def authenticate(self, request: web.Request, state: EmulatorState) -> None:
        key = bearer_token(request)
        if key != state.api_key:
            raise ApiError(401, "No auth credentials found" if key is None else "User not found.")

    def error_body(self, err: ApiError) -> Any:
        return {"error": {"code": err.status, "message": err.message, "metadata": {"provider_name": None}}}

    def unknown_model(self, model: str) -> ApiError:
        return ApiError(400, f"{model} is not a valid model ID")

    def stream_error(self, err: ApiError) -> list[SSE]:
        body = self.state.last_request.json
        return [SSE({"id": self.completion_id("gen-"), "object": "chat.completion.chunk", "created": CREATED,
                     "model": body.get("model") if isinstance(body, dict) else None, "provider": "OpenAI",
                     "error": {"code": err.code or "server_error", "message": err.message},
                     "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error",
                                  "native_finish_reason": "error"}]})]

    def success_headers(self) -> dict[str, str]:
        return {"x-generation-id": self.completion_id("gen-")}

    def completion_id(self, prefix: str = "gen-") -> str:
        return super().completion_id("gen-")

    def usage(self, reply: Reply, n: int = 1) -> dict[str, Any]:
        usage = super().usage(reply, n)
        return {**usage, "cost": round(usage["prompt_tokens"] * 1e-6 + usage["completion_tokens"] * 2e-6, 9)}

    def chunk_choice(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**super().chunk_choice(index, {"role": "assistant", **delta}, finish), "native_finish_reason":
                finish}

    def decorate_response(self, resp: dict[str, Any], reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        for choice in resp["choices"]:
            choice["native_finish_reason"] = choice["finish_reason"]
            choice["message"]["reasoning"] = None
        return {**resp, "provider": "OpenAI"}

    def finish_chunks(self, chunks: list[dict[str, Any]], base: dict[str, Any], reply: Reply, n: int,
                      include_usage: bool) -> list[dict[str, Any]]:
        base = {**base, "provider": "OpenAI"}
        chunks = [{**c, "provider": "OpenAI"} for c in chunks]
        return [*chunks, {**base, "choices": [], "usage": self.usage(reply, n)}]  # usage is always sent

    def to_events(self, chunks: list[dict[str, Any]]) -> list[SSE]:
        events = super().to_events(chunks)
        keepalive = SSE(comment="OPENROUTER PROCESSING")
        return [keepalive, keepalive, events[0], keepalive, *events[1:]]


VENDORS = {"perplexity": PerplexityEmulator, "grok": GrokEmulator, "blackbox": BlackboxEmulator,
           "openrouter": OpenRouterEmulator}


def create_app(state: EmulatorState, vendor: str, **options: Any) -> web.Application:
    """vendor: perplexity (option `reject_tools`), grok, blackbox or openrouter."""
    return VENDORS[vendor](state, **options).create_app()
