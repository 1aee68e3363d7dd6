"""The request path's prebuilt plans answer exactly as the general path does: the same buckets
charged, the same refusals, the same ``x-ratelimit-*`` headers; and the prompt is counted once."""

from __future__ import annotations

import random

from gateway.context import RequestContext
from gateway.operations import CHAT
from plugins import ratelimit
from plugins.prompt_estimate import prompt_chars
from plugins.ratelimit_backend import REQUESTS, TOKENS, InProcessBackend, Limit
from plugins.ratelimit_plan import Plan
from tests.plugins.test_ratelimit import Clock

LIMITS = (
    Limit.of("gateway", "global:requests", REQUESTS, 600, 60),
    Limit.of("gateway", "global:tokens", TOKENS, 9000, 30),
    Limit.of("provider 'a'", "provider:a:requests", REQUESTS, 60, 10),
    Limit.of("provider 'a'", "provider:a:tokens", TOKENS, 6000, 60),
    Limit.of("key 'k'", "key:k:tokens", TOKENS, 1200, 1),
)


def test_take_rows_and_put_headers_match_take_and_ratelimit_headers():
    plan = Plan.of(LIMITS)
    fast_clock, slow_clock = Clock(), Clock()
    fast, slow = InProcessBackend(fast_clock), InProcessBackend(slow_clock)
    rng = random.Random(20)
    admitted = refused = 0
    for _ in range(400):
        step, tokens = rng.choice((0.0, 0.05, 0.5, 3.0)), rng.randint(1, 400)
        fast_clock.now += step
        slow_clock.now += step
        afters = fast.take_rows(plan.rows, tokens)
        decision = slow.take(plan.charges(tokens))
        assert (afters is not None) == decision.admitted
        if afters is None:
            refused += 1
            continue
        admitted += 1
        headers: dict[str, str] = {}
        plan.put_headers(headers, afters)
        assert headers == ratelimit.ratelimit_headers(decision.views)
        assert list(headers) == list(ratelimit.ratelimit_headers(decision.views))
        assert fast._tats == slow._tats
    assert admitted > 50 and refused > 50  # both ways were exercised


def test_the_prompt_is_counted_once_and_again_when_replaced():
    ctx = RequestContext(None, CHAT, "req")  # type: ignore[arg-type]
    messages = [{"role": "user", "content": "x" * 40},
                {"role": "assistant", "content": [{"type": "text", "text": "yy"}]}]
    ctx.body = {"messages": messages}
    assert prompt_chars(ctx) == 42
    messages[0]["content"] = "changed in place after the count"
    assert prompt_chars(ctx) == 42  # the first count stands (see plugins/prompt_estimate.py)
    ctx.body = {"messages": [{"role": "user", "content": "abc"}]}
    assert prompt_chars(ctx) == 3
    assert ratelimit.estimate_tokens(ctx, default_max_tokens=5) == 1 + 5
