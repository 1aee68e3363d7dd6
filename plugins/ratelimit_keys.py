"""Limits as buckets: ``make_limits`` for a configured ``RateLimitSpec``, and ``RunTimeLimits`` for
keys made at run time (virtual keys), whose spec arrives on the principal.

A principal whose ``attributes["rate_limit"]`` holds a ``RateLimitSpec`` is limited like a static
key with that spec. The ``Limit`` tuple is built once per (key name, spec object) and cached, so a
request costs two dict look-ups and an identity check; an authenticator keeps handing out the same
spec object until the key changes (``plugins.governance.virtual_keys.KeyIndex``).
"""

from __future__ import annotations

from gateway import Principal
from gateway.config import RateLimitSpec
from plugins.ratelimit_backend import REQUESTS, TOKENS, Limit


def make_limits(scope: str, key: str, spec: RateLimitSpec | None, window_s: float) -> tuple[Limit, ...]:
    if spec is None:
        return ()
    pairs = ((REQUESTS, spec.requests_per_minute), (TOKENS, spec.tokens_per_minute))
    return tuple(Limit.of(scope, f"{key}:{kind}", kind, n, window_s) for kind, n in pairs if n)


class RunTimeLimits:
    """key name -> (its spec object, its limits). One entry per key this process has served."""

    __slots__ = ("_cache", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._cache: dict[str, tuple[RateLimitSpec, tuple[Limit, ...]]] = {}

    def of(self, principal: Principal) -> tuple[Limit, ...]:
        spec = principal.attributes.get("rate_limit") if principal.attributes else None
        if spec is None:
            return ()
        cached = self._cache.get(principal.name)
        if cached is None or cached[0] is not spec:
            # The numbers name the buckets: a changed limit starts fresh buckets, and the old ones
            # drain and go (Redis: their PX expiry; memory: pruned once empty).
            key = f"vkey:{principal.name}:{spec.requests_per_minute or 0}:{spec.tokens_per_minute or 0}"
            cached = self._cache[principal.name] = (
                spec, make_limits(f"key '{principal.name}'", key, spec, self.window_s))
        return cached[1]
