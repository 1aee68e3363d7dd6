"""How many tokens a request is charged: a cheap estimate at admission (the reservation) and
what it really cost once it finished (the settlement)."""

from __future__ import annotations

import math
from typing import Any

from gateway import Outcome, RequestContext

# Message fields whose text a model reads; others (images, audio, files) are not priced per character.
TEXT_KEYS = frozenset({"content", "text", "tool_calls", "function", "arguments", "name", "refusal"})
CHARS_PER_TOKEN = 4


def text_chars(value: Any) -> int:
    """Characters of text in a prompt, messages or embeddings input; a token id counts as 4.
    Loops rather than ``sum`` over generators: it runs on every limited request's whole prompt."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return CHARS_PER_TOKEN
    n = 0
    if isinstance(value, list):
        for item in value:
            n += len(item) if isinstance(item, str) else text_chars(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in TEXT_KEYS:
                n += len(v) if isinstance(v, str) else text_chars(v)
    return n


def estimate_tokens(ctx: RequestContext, default_max_tokens: int = 0) -> int:
    body = ctx.body
    prompt = body.get(ctx.op.input_field) if ctx.op is not None else None
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    n = body.get("n") or 1
    if not isinstance(completion, int) or not isinstance(n, int):
        completion, n = 0, 1
    return math.ceil(text_chars(prompt) / CHARS_PER_TOKEN) + completion * max(n, 1)


def used_tokens(outcome: Outcome, estimate: float) -> float:
    """What the request really cost: its usage, none for a cache hit or a failed upstream call,
    and the estimate when unknown (a stream without usage, a client that went away)."""
    if outcome.cache == "hit":
        return 0
    if outcome.usage is not None:
        return outcome.usage.total_tokens
    if outcome.status >= 400 and outcome.status != 499:
        return 0
    return estimate
