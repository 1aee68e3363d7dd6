"""The prompt's size as the gateway estimates it before a vendor has counted it: the characters
of text a model reads, measured once per request and shared by every plugin that reserves
against it (the rate limiter's token reservation, governance's budget reservation).

Counted: strings under the message fields a model reads (``TEXT_KEYS``), plain string prompts
and embeddings inputs; a token id counts as ``CHARS_PER_TOKEN``. Not counted: images, audio and
files (their bytes are not priced per character) and the JSON structure around the text.

The count is kept on the request (``RequestContext.stash``) together with the prompt object it
was made from, so a plugin that replaces the prompt (or the body) before a later reservation
gets a fresh count; one that edits the prompt in place keeps the first count.
"""

from __future__ import annotations

from typing import Any

from gateway import RequestContext, StashKey

# Message fields whose text a model reads; others (images, audio, files) are not priced per character.
TEXT_KEYS = frozenset({"content", "text", "tool_calls", "function", "arguments", "name", "refusal"})
CHARS_PER_TOKEN = 4
# (the prompt object measured, its characters)
PROMPT_CHARS: StashKey[tuple[Any, int]] = StashKey("prompt.chars")


def text_chars(value: Any) -> int:
    """Characters of text in a prompt, messages or embeddings input; a token id counts as 4.
    Loops rather than ``sum`` over generators: it runs on every reserving request's whole prompt."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return CHARS_PER_TOKEN
    n = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                n += len(item)
            elif isinstance(item, dict):  # a message: its fields here, not in a call per message
                for k, v in item.items():
                    if k in TEXT_KEYS:
                        n += len(v) if isinstance(v, str) else text_chars(v)
            else:
                n += text_chars(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in TEXT_KEYS:
                n += len(v) if isinstance(v, str) else text_chars(v)
    return n


def prompt_chars(ctx: RequestContext) -> int:
    """Characters of text in the request's prompt (its operation's input field), counted once."""
    op = ctx.op
    prompt = ctx.body.get(op.input_field) if op is not None else None
    stash = ctx.stash
    known = stash.get(PROMPT_CHARS)
    if known is not None and known[0] is prompt:
        return known[1]
    n = text_chars(prompt)
    stash[PROMPT_CHARS] = (prompt, n)
    return n


def asked_completion(body: dict[str, Any], default_max_tokens: int) -> tuple[int, int] | None:
    """The completion a request asks room for: (its output tokens: ``max_completion_tokens``, else
    ``max_tokens``, else ``default_max_tokens``; its choices: ``n``, 1 when absent). None when
    either is not an integer (the vendor refuses it): each estimate says what it reserves then."""
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    n = body.get("n") or 1
    if not isinstance(completion, int) or not isinstance(n, int):
        return None
    return completion, n
