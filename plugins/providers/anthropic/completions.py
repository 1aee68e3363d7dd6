"""Legacy ``/v1/completions`` through the Messages API (Anthropic has no text-completion API).

The prompt becomes one user message; every other field takes the chat path, so sampling, stop,
user and max-token rules are identical. The reply is reshaped as ``text_completion``.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError
from plugins.providers.anthropic.chat import chat_completion

# Legacy fields that change what the reply *is*; silently ignoring them would return something
# other than what the client asked for, so they are rejected.
UNSUPPORTED = {
    "echo": lambda v: v is True,
    "suffix": lambda v: bool(v),
    "best_of": lambda v: v not in (None, 1),
}


def chat_body(body: dict[str, Any], provider: str) -> dict[str, Any]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # a one-element batch is the same request
    if not isinstance(prompt, str):
        raise InvalidRequestError(
            f"Provider '{provider}' accepts one text prompt per request (no batches or token arrays).",
            param="prompt",
        )
    for key, rejected in UNSUPPORTED.items():
        if rejected(body.get(key)):
            raise InvalidRequestError(f"Provider '{provider}' does not support '{key}'.", param=key)
    chat = {k: v for k, v in body.items() if k not in ("prompt", *UNSUPPORTED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def text_completion(payload: Any, model: str) -> dict[str, Any]:
    chat = chat_completion(payload, model)
    choice = chat["choices"][0]
    return {
        "id": chat["id"],
        "object": "text_completion",
        "created": chat["created"],
        "model": chat["model"],
        "choices": [{"text": choice["message"]["content"] or "", "index": 0, "logprobs": None,
                     "finish_reason": choice["finish_reason"]}],
        "usage": chat["usage"],
    }
