"""What chat, stream and embed share: finish reasons and usage in OpenAI's words."""

from __future__ import annotations

import logging
from typing import Any

from plugins.providers.cohere.errors import ERROR_REASONS, generation_error

log = logging.getLogger("llm_gateway.providers.cohere")

FINISH_REASONS = {
    "complete": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_call": "tool_calls",
    "content_blocked": "content_filter", "error_toxic": "content_filter",
}


def finish_reason(reason: Any, provider: str = "cohere", detail: Any = None) -> str:
    """Cohere's finish reason in OpenAI's words (case-insensitive); raises for failed generations."""
    key = str(reason or "").lower()
    if key in ERROR_REASONS:
        raise generation_error(provider, str(reason), detail)
    mapped = FINISH_REASONS.get(key)
    if mapped is None:
        log.warning("provider %s: unknown finish_reason %r, reported as 'stop'", provider, reason)
        return "stop"
    return mapped


def usage_of(usage: Any, source: str) -> dict[str, Any] | None:
    """OpenAI usage from Cohere's ``usage`` (chat) or ``meta`` (embed) object.

    ``source`` picks ``billed_units`` (what Cohere charges) or ``tokens`` (raw, incl. its hidden
    preamble); the other one is the fallback when the chosen one is missing.
    """
    if not isinstance(usage, dict):
        return None
    counts = usage.get(source) or usage.get("tokens" if source == "billed_units" else "billed_units")
    if not isinstance(counts, dict):
        return None
    prompt, completion = int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    cached = int(usage.get("cached_tokens") or 0)
    if cached:
        # Clamped: a cache hit may cover the hidden preamble, which billed input does not count.
        out["prompt_tokens_details"] = {"cached_tokens": min(cached, prompt)}
    return out
