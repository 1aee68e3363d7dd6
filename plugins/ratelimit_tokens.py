"""How many tokens a request is charged: a cheap estimate at admission (the reservation) and
what it really cost once it finished (the settlement)."""

from __future__ import annotations

import math

from gateway import Outcome, RequestContext
from plugins.prompt_estimate import CHARS_PER_TOKEN, asked_completion, prompt_chars


def estimate_tokens(ctx: RequestContext, default_max_tokens: int = 0) -> int:
    """The prompt's characters / 4 (``plugins.prompt_estimate``, shared with governance's budget
    reservation), plus ``max_tokens`` x ``n`` or ``default_max_tokens``."""
    completion, n = asked_completion(ctx.body, default_max_tokens) or (0, 1)
    return math.ceil(prompt_chars(ctx) / CHARS_PER_TOKEN) + completion * max(n, 1)


def spent_tokens(outcome: Outcome) -> float | None:
    """What the request really cost: its usage, none for a cache hit or a failed upstream call,
    and None when unknown (a stream without usage, a client that went away): the estimate stands."""
    if outcome.cache == "hit":
        return 0
    if outcome.usage is not None:
        return outcome.usage.total_tokens
    if outcome.status >= 400 and outcome.status != 499:
        return 0
    return None
