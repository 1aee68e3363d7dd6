"""Legacy ``/v1/completions`` through Cohere chat (Cohere has no text-completion endpoint any more).

The prompt becomes one user message; the chat answer is reshaped to ``text_completion``. Streams use
the chat stream translator in its text mode (``choices[].text``).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError

# Completion-only fields that change what comes back and cannot be emulated over chat.
REJECTED = {"suffix": "inserting before a suffix", "echo": "echoing the prompt"}


def prompt_text(prompt: Any) -> str:
    """One text prompt: a string, or a list holding exactly one string (several would need ``n`` calls)."""
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError("Cohere completions take one text prompt (no batches, no token arrays).",
                                  param="prompt")
    return prompt


def completion_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The equivalent chat request (the caller builds the Cohere body from it)."""
    for key, what in REJECTED.items():
        if body.get(key):
            raise InvalidRequestError(f"Cohere completions do not support {what} ('{key}').", param=key)
    if (body.get("best_of") or 1) != 1:
        raise InvalidRequestError("Cohere returns a single choice: 'best_of' must be 1.", param="best_of")
    chat = {k: v for k, v in body.items() if k not in ("prompt", "best_of", "echo", "suffix", "logprobs")}
    chat["messages"] = [{"role": "user", "content": prompt_text(body.get("prompt"))}]
    return chat


def chat_to_completion(chat: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` dict (from ``parse_chat``) as a ``text_completion``."""
    choices = [{"index": c["index"], "text": c["message"].get("content") or "", "logprobs": None,
                "finish_reason": c["finish_reason"]} for c in chat["choices"]]
    out = {"id": chat["id"], "object": "text_completion", "created": chat["created"], "model": chat["model"],
           "choices": choices}
    if "usage" in chat:
        out["usage"] = chat["usage"]
    return out
