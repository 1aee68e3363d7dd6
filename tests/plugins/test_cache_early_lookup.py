"""The lookup started with the admission is used only for the key it was started for: a body that
another plugin edits in ``gateway_before_upstream`` (before the cache decides) is looked up again,
under its new key, and its answer stored there; an unchanged body is not looked up twice."""

from __future__ import annotations

import asyncio

from gateway import RequestContext, hookimpl
from tests.plugins.test_ratelimit import chat
from tests.plugins.test_redis_round_trips import KEY, backend_of, body, both_on_redis

AUTH = {"Authorization": f"Bearer {KEY}"}


class Rewriter:
    """Edits one question into another right before upstream (registered last: it runs before
    the cache's ``gateway_before_upstream``)."""

    @hookimpl
    def gateway_before_upstream(self, ctx: RequestContext) -> None:
        if ctx.body["messages"][0]["content"] == "question 1":
            ctx.body["messages"] = body(2)["messages"]


async def test_a_body_edited_before_the_cache_decides_is_looked_up_under_its_new_key(gateway, http, redis_server):
    gw = await gateway(both_on_redis(redis_server.url, 0.5))
    gw.gw.pm.register(Rewriter(), name="test.rewriter")
    gw.gw.refresh_hooks()
    pipe = backend_of(gw).pipe
    assert (await chat(http, gw, body(0), **AUTH))[0] == 200  # all warm
    await asyncio.sleep(0.1)

    pipe.recent.clear()
    status, headers, _ = await chat(http, gw, body(1), **AUTH)  # asked as 1, sent upstream as 2
    assert status == 200 and headers["x-cache"] == "MISS"
    await asyncio.sleep(0.05)  # the store, after the response
    # The early GET (question 1's key) with the admission; a GET of its own for question 2's key.
    assert list(pipe.recent) == [("GET", "EVALSHA"), ("GET",), ("SET",)], list(pipe.recent)

    status, headers, _ = await chat(http, gw, body(2), **AUTH)  # stored under the key it was sent as
    assert status == 200 and headers["x-cache"] == "HIT"
    keys = redis_server.command("KEYS", "llm-gateway:cache:v1:*").decode()
    assert keys.count("llm-gateway:cache:v1:") == 2  # question 0's and question 2's; none for 1

    pipe.recent.clear()
    status, headers, _ = await chat(http, gw, body(0), **AUTH)  # unchanged: its early lookup is used
    assert status == 200 and headers["x-cache"] == "HIT"
    assert list(pipe.recent) == [("GET", "EVALSHA")], list(pipe.recent)
