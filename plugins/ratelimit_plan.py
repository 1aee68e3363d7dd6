"""Every limit one request is charged against, laid out once for the request path.

A ``Plan`` holds the limits of one (client key, provider) pair (global, then provider, then key)
in the flat forms each step needs: rows for the in-process admission, the Redis admission's
command (its keys and fixed arguments encoded once), the header groups for ``x-ratelimit-*``,
the token limits for settlement, and ``Charge`` objects for a backend's ``acquire``. ``Plans``
makes one per pair on first use and keeps it while the key's spec object is the same one (a
virtual key's spec changes object when the key changes: ``plugins.ratelimit_keys``), so a
request looks its plan up instead of building lists. The general path's headers and 429 (from a
backend's ``Decision``) are here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway import RateLimitError, RequestContext
from plugins.ratelimit_backend import EPSILON_S, REQUESTS, TOKENS, BucketView, Charge, Decision, Limit, Row
from plugins.ratelimit_gcra import admit_command

PROVIDER_KEY = "provider:"  # how a provider level's bucket names begin
HEADER_NAMES = {kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
                for kind in (REQUESTS, TOKENS)}


def format_duration(seconds: float) -> str:
    """OpenAI's style for ``x-ratelimit-reset-*``: ``250ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def ratelimit_headers(views: Sequence[BucketView]) -> dict[str, str]:
    """Per kind, the bucket with the least room left (the one a client should watch); the usual
    in-process admission has its own ``Plan.put_headers``."""
    least: dict[str, BucketView] = {}
    for v in views:
        best = least.get(v.limit.kind)
        if best is None or v.remaining < best.remaining:  # the first of equals, as min() picks
            least[v.limit.kind] = v
    headers: dict[str, str] = {}
    for kind, tightest in least.items():
        limit_name, remaining_name, reset_name = HEADER_NAMES[kind]
        headers[limit_name] = str(tightest.limit.per_minute)
        headers[remaining_name] = str(max(0, math.floor(tightest.remaining + 1e-9)))
        headers[reset_name] = format_duration(tightest.reset_s)
    return headers


def too_many(decision: Decision) -> RateLimitError:
    blocking = max(decision.views, key=lambda v: v.wait_s)
    limit = blocking.limit
    wait = decision.retry_after
    return RateLimitError(
        f"Rate limit exceeded: {limit.scope} allows {limit.per_minute} {limit.kind} per minute. "
        f"Retry after {max(1, math.ceil(wait))}s.",
        retry_after=wait, headers=ratelimit_headers(decision.views),
    )


@dataclass(frozen=True, slots=True)
class Plan:
    limits: tuple[Limit, ...]
    provider: str | None  # whose provider limits are in it (None: no provider level)
    rows: tuple[Row, ...]  # InProcessBackend.take_rows, one per limit
    # Per kind, in the order of its first limit: the three header names and, per limit of that
    # kind, (its row index, capacity, interval_s, per_minute as text).
    kinds: tuple[tuple[str, str, str, tuple[tuple[int, float, float, str], ...]], ...]
    # The token limits, for settlement: (limit, capacity, charged whichever provider served).
    token_limits: tuple[tuple[Limit, float, bool], ...]
    units: tuple[Charge | None, ...]  # a requests limit's charge of one unit, made once
    # On Redis: the admission script's call but for the token estimate (plugins.ratelimit_gcra).
    admit: tuple[str, ...] = ()

    @classmethod
    def of(cls, limits: tuple[Limit, ...], provider: str | None = None, prefix: str | None = None) -> Plan:
        """``prefix``: the Redis backend's key prefix, when the buckets are in Redis."""
        kinds: dict[str, list[tuple[int, float, float, str]]] = {}
        for i, lim in enumerate(limits):
            kinds.setdefault(lim.kind, []).append((i, lim.capacity, lim.interval_s, str(lim.per_minute)))
        return cls(
            limits,
            provider,
            tuple((lim.key, lim.interval_s, lim.tau_s + EPSILON_S, lim.capacity if lim.kind == TOKENS else None)
                  for lim in limits),
            tuple((*HEADER_NAMES[kind], tuple(members)) for kind, members in kinds.items()),
            tuple((lim, lim.capacity, not lim.key.startswith(PROVIDER_KEY)) for lim in limits if lim.kind == TOKENS),
            tuple(Charge(lim, 1) if lim.kind == REQUESTS else None for lim in limits),
            admit_command([prefix + lim.key for lim in limits], limits) if prefix is not None and limits else (),
        )

    def charges(self, tokens: int) -> tuple[Charge, ...]:
        """What ``LimiterBackend.acquire`` is given: one unit per requests limit, the token
        estimate (at most the bucket's capacity) per tokens limit."""
        return tuple(unit or Charge(lim, min(tokens, lim.capacity))
                     for lim, unit in zip(self.limits, self.units, strict=True))

    def put_headers(self, headers: dict[str, str], afters: Sequence[float], per_s: float = 1.0) -> None:
        """``x-ratelimit-*`` of an admission from each bucket's time to empty after it (``afters``,
        in 1/``per_s`` seconds: the in-process backend's seconds, the Redis script's microseconds):
        per kind, the bucket with the least room left, the first of equals."""
        for limit_name, remaining_name, reset_name, members in self.kinds:
            least = math.inf  # every kind has a member: the first one always replaces it
            reset = 0.0
            per_minute = ""
            for i, capacity, interval_s, text in members:
                after = afters[i] / per_s
                room = capacity - after / interval_s
                if room < 0.0:
                    room = 0.0
                if room < least:
                    least, reset, per_minute = room, after, text
            headers[limit_name] = per_minute
            headers[remaining_name] = str(int(least + 1e-9))
            headers[reset_name] = f"{math.ceil(reset * 1000)}ms" if reset < 1 else format_duration(reset)


class Plans:
    """(client key name, provider name) -> its ``Plan``; ``limits_for`` says which limits apply."""

    __slots__ = ("_by_key", "_limits_for", "_prefix", "_static")

    def __init__(self, static_keys: dict[str, tuple[Limit, ...]],
                 limits_for: Callable[[RequestContext, int], tuple[Limit, ...]], prefix: str | None = None) -> None:
        self._static = static_keys
        self._limits_for = limits_for
        self._prefix = prefix  # the Redis backend's key prefix, when the buckets are in Redis
        # key name (None: no principal) -> (the run-time spec object its plans were made from, plans)
        self._by_key: dict[str | None, tuple[object, dict[str | None, Plan]]] = {}

    def of(self, ctx: RequestContext, target: int = 0) -> Plan:
        principal = ctx.principal
        name = spec = None
        if principal is not None:
            name = principal.name
            if name not in self._static:  # a static key's limits win over a run-time spec
                attributes = principal.attributes
                spec = attributes.get("rate_limit") if attributes else None
        entry = self._by_key.get(name)
        if entry is None or entry[0] is not spec:
            entry = self._by_key[name] = (spec, {})
        provider = ctx.targets[target].provider.name if ctx.targets else None
        plan = entry[1].get(provider)
        if plan is None:
            plan = entry[1][provider] = Plan.of(self._limits_for(ctx, target), provider, self._prefix)
        return plan
