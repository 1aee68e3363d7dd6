"""Chat: an OpenAI chat-completions body → an Anthropic Messages body, and a Message → a
``chat.completion``. Every per-field decision is listed in docs/providers/anthropic.md."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import orjson

from gateway.errors import InvalidRequestError
from plugins.providers.anthropic.content import message_blocks, text_blocks
from plugins.providers.anthropic.tools import apply_tools

log = logging.getLogger("llm_gateway.providers.anthropic")

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Fields the translation consumes (the rest of the body is dropped with a debug log, because
# Anthropic rejects unknown top-level fields with "Extra inputs are not permitted").
HANDLED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n",
    "user", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "response_format",
})
# Anthropic-native fields with no OpenAI meaning, sent by clients through ``extra_body``.
PASSTHROUGH = ("top_k", "thinking")
# Deprecated OpenAI function calling: rejected rather than silently dropped (the model would
# otherwise answer without ever calling the functions).
REJECTED = ("functions", "function_call")
JSON_OBJECT_INSTRUCTION = (
    "Respond only with one valid JSON object. Do not wrap it in code fences or add any other text."
)


class ChatOptions(Protocol):
    default_max_tokens: int
    max_tokens_by_model: dict[str, int]
    thinking: dict[str, Any] | None


def finish_reason(stop_reason: Any) -> str:
    mapped = FINISH_REASONS.get(str(stop_reason).lower())
    if mapped is None:
        # New stop reasons appear over time; "stop" is the least surprising answer for a client.
        log.debug("unknown Anthropic stop_reason %r mapped to 'stop'", stop_reason)
        return "stop"
    return mapped


def openai_usage(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic counts cache writes and reads apart from ``input_tokens``; OpenAI's
    ``prompt_tokens`` includes every prompt token, with the cache hits in ``cached_tokens``."""
    raw = raw or {}
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    prompt = int(raw.get("input_tokens") or 0) + int(raw.get("cache_creation_input_tokens") or 0) + cache_read
    completion = int(raw.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


# -- request ------------------------------------------------------------------------------------
def build_payload(body: dict[str, Any], model: str, options: ChatOptions, provider: str) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat body (already validated by the core)."""
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequestError(f"Provider '{provider}' does not support n > 1.", param="n")
    for key in REJECTED:
        if body.get(key) is not None:
            raise InvalidRequestError(f"Provider '{provider}' does not support '{key}'; use 'tools'.", param=key)
    system, messages = translate_messages(body["messages"])
    payload: dict[str, Any] = {"model": model, "max_tokens": max_tokens(body, model, options), "messages": messages}
    apply_response_format(body.get("response_format"), payload, system)
    if system:
        payload["system"] = system_value(system)
    apply_sampling(body, payload, provider)
    apply_tools(body, payload)
    if body.get("user"):
        payload["metadata"] = {"user_id": str(body["user"])}
    if body.get("stream"):
        payload["stream"] = True
    for key in PASSTHROUGH:
        if body.get(key) is not None:
            payload[key] = body[key]
    if options.thinking is not None and "thinking" not in payload:
        payload["thinking"] = dict(options.thinking)
    dropped = sorted(set(body) - HANDLED - set(PASSTHROUGH))
    if dropped:
        log.debug("provider %s: dropping fields without an Anthropic equivalent: %s", provider, dropped)
    return payload


def max_tokens(body: dict[str, Any], model: str, options: ChatOptions) -> Any:
    """Anthropic requires ``max_tokens``; OpenAI's newer name wins when both are sent."""
    for key in ("max_completion_tokens", "max_tokens"):
        if body.get(key) is not None:
            return body[key]
    return options.max_tokens_by_model.get(model, options.default_max_tokens)


def translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): system/developer turns move to the top-level ``system``; tool
    results become user turns; consecutive same-role turns merge, so roles alternate."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system += text_blocks(msg.get("content"), f"messages[{i}].content")
            continue
        blocks = message_blocks(msg, i)
        if not blocks:
            continue  # an empty turn (e.g. assistant content ""): Anthropic rejects empty content
        api_role = "assistant" if role == "assistant" else "user"
        if out and out[-1]["role"] == api_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": api_role, "content": blocks})
    return system, [compact(m) for m in out]


def compact(message: dict[str, Any]) -> dict[str, Any]:
    """One plain text block becomes a string: the shape a native client sends for simple turns."""
    blocks = message["content"]
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"} and blocks[0]["type"] == "text":
        return {"role": message["role"], "content": blocks[0]["text"]}
    return message


def system_value(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
        return blocks[0]["text"]
    return blocks  # several system turns stay separate blocks, in order (no invented separator)


def apply_response_format(fmt: Any, payload: dict[str, Any], system: list[dict[str, Any]]) -> None:
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        # No JSON mode without a schema exists upstream: an instruction is the closest match.
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        return
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError("'response_format.json_schema.schema' must be an object.",
                                      param="response_format.json_schema.schema")
        payload["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return
    raise InvalidRequestError(f"Unsupported response_format type {kind!r}.", param="response_format.type")


def apply_sampling(body: dict[str, Any], payload: dict[str, Any], provider: str) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature > 1:
            # OpenAI allows 0..2, Anthropic 0..1: clamping keeps "as random as possible" meaning.
            log.debug("provider %s: temperature %s clamped to 1", provider, temperature)
            temperature = 1.0
        payload["temperature"] = temperature
    if body.get("top_p") is not None:
        payload["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not isinstance(stop, list):
        raise InvalidRequestError("'stop' must be a string or an array of strings.", param="stop")
    if stop:
        payload["stop_sequences"] = stop


# -- response -----------------------------------------------------------------------------------
def chat_completion(payload: Any, model: str) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("content", []), list):
        raise ValueError("response is not an Anthropic message")
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in payload.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": json_text(block.get("input"))}})
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return {
        "id": payload.get("id") or f"msg_{time.time_ns():x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model") or model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(payload.get("stop_reason"))}],
        "usage": openai_usage(payload.get("usage")),
    }


def json_text(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()
