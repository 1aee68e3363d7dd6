"""What identifies a cached answer and which answers may be cached (see ``plugins.cache``)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway import RequestContext

CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})
# Fields that change how an answer is delivered or attributed, not what it is.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})
NO_DIRECTIVES: frozenset[str] = frozenset()


def cache_control(ctx: RequestContext) -> frozenset[str]:
    value = ctx.request.headers.get("Cache-Control")
    if not value:  # most requests send none: no set to build
        return NO_DIRECTIVES
    return frozenset(d.strip().lower() for d in value.split(",") if d.strip())


def key_input(ctx: RequestContext, per_key: bool = False) -> bytes | None:
    """What the key is the SHA-256 of; None when the body cannot be serialised. Kept by a lookup
    started early, so that the key need not be hashed again when this is still the same."""
    assert ctx.op is not None
    target = ctx.targets[0]
    body = ctx.body
    if not IGNORED_FIELDS.isdisjoint(body):  # most non-stream bodies have none: no copy to make
        body = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a plugin put something non-JSON in the body: do not cache
        return None
    prefix = f"{ctx.op.name}\0{target.provider.name}\0{target.model}\0"
    if per_key and ctx.principal is not None:
        prefix += f"key\0{ctx.principal.name}\0"
    return prefix.encode() + canonical


def cacheable(response: dict[str, Any]) -> bool:
    if "error" in response:
        return False
    choices = response.get("choices")
    if choices is None:  # embeddings
        return isinstance(response.get("data"), list)
    if not choices or not isinstance(choices, list):
        return False
    for c in choices:  # noqa: SIM110 -- a loop, not all() over a generator: every answer passes here
        if not isinstance(c, dict) or c.get("finish_reason") not in CACHEABLE_FINISH:
            return False
    return True
