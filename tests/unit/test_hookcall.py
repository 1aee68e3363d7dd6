from __future__ import annotations

import pluggy

from gateway import hookspecs
from gateway.hookcall import Hooks
from gateway.hookspecs import hookimpl


def manager(*plugins) -> Hooks:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for i, p in enumerate(plugins):
        pm.register(p, name=f"p{i}")
    return Hooks(pm)


class SyncNone:
    @hookimpl
    def gateway_before_upstream(self, ctx):
        return None


class AsyncNone:
    @hookimpl
    async def gateway_before_upstream(self, ctx):
        return None


class AsyncHit:
    def __init__(self, value):
        self.value = value

    @hookimpl
    async def gateway_before_upstream(self, ctx):
        return self.value


async def test_first_awaits_in_order_and_skips_async_none():
    # pluggy calls later-registered plugins first: AsyncNone, then AsyncHit("b"), then AsyncHit("a").
    hooks = manager(AsyncHit("a"), SyncNone(), AsyncHit("b"), AsyncNone())
    assert await hooks.first("gateway_before_upstream", ctx=None) == "b"


async def test_first_closes_coroutines_it_did_not_start():
    # filterwarnings=error turns a "coroutine was never awaited" warning into a failure.
    hooks = manager(AsyncHit("late"), AsyncHit("early"))
    assert await hooks.first("gateway_before_upstream", ctx=None) == "early"


async def test_has_reports_only_implemented_hooks_and_all_safe_isolates_failures():
    calls = []

    class Boom:
        @hookimpl
        def gateway_request_finished(self, ctx, outcome):
            raise RuntimeError("plugin bug")

    class Fine:
        @hookimpl
        async def gateway_request_finished(self, ctx, outcome):
            calls.append(outcome)

    hooks = manager(Fine(), Boom())
    assert hooks.has("gateway_request_finished") and not hooks.has("gateway_wrap_stream")
    await hooks.all_safe("gateway_request_finished", ctx=None, outcome="done")
    assert calls == ["done"]


async def test_a_raising_implementation_strands_no_coroutine():
    class Raises:
        @hookimpl
        def gateway_authenticate(self, ctx):
            raise RuntimeError("wrong key")

    class AsyncLater:
        @hookimpl(trylast=True)
        async def gateway_authenticate(self, ctx):
            return "never reached"

    class AsyncFirst:
        @hookimpl(tryfirst=True)
        async def gateway_authenticate(self, ctx):
            return None

    hooks = manager(AsyncLater(), Raises(), AsyncFirst())
    try:
        await hooks.first("gateway_authenticate", ctx=None)
    except RuntimeError as exc:
        assert str(exc) == "wrong key"
    else:
        raise AssertionError("the error must propagate")
    # With filterwarnings=error a never-awaited coroutine from AsyncLater would fail this test.


async def test_the_request_path_variants_make_no_coroutine_until_a_plugin_must_wait():
    calls = []

    class Plain:
        @hookimpl
        def gateway_request_received(self, ctx):
            calls.append("plain")

    class Waits:
        @hookimpl(tryfirst=True)
        def gateway_request_received(self, ctx):
            calls.append("decides")
            return None if ctx == "now" else finish()

    async def finish():
        calls.append("waited")

    hooks = manager(Plain(), Waits())
    assert hooks.run("gateway_request_received", "now") is None
    assert calls == ["decides", "plain"]
    calls.clear()
    pending = hooks.run("gateway_request_received", "later")
    assert calls == ["decides"]  # the rest runs once the awaitable is awaited, in order
    await pending
    assert calls == ["decides", "waited", "plain"]


async def test_first_now_gives_a_plain_result_at_once_and_an_awaitable_otherwise():
    assert manager(SyncNone()).first_now("gateway_before_upstream", None) is None

    class Plain:
        @hookimpl
        def gateway_before_upstream(self, ctx):
            return "plain"

    assert manager(Plain(), SyncNone()).first_now("gateway_before_upstream", None) == "plain"
    # AsyncNone first (registered last), then the plain answer after it.
    assert await manager(Plain(), AsyncNone()).first_now("gateway_before_upstream", None) == "plain"


async def test_run_safe_logs_a_failure_and_runs_the_rest(caplog):
    calls = []

    class Boom:
        @hookimpl
        def gateway_request_finished(self, ctx, outcome):
            raise RuntimeError("plugin bug")

    class AsyncBoom:
        @hookimpl
        async def gateway_request_finished(self, ctx, outcome):
            raise RuntimeError("async plugin bug")

    class Fine:
        @hookimpl
        def gateway_request_finished(self, ctx, outcome):
            calls.append(outcome)

    assert manager(Fine(), Boom()).run_safe("gateway_request_finished", None, "a") is None
    await manager(Fine(), AsyncBoom()).run_safe("gateway_request_finished", None, "b")
    assert calls == ["a", "b"]
    assert [r.message for r in caplog.records].count("plugin p1 failed in gateway_request_finished") == 2


async def test_implementations_get_the_arguments_they_name_whatever_their_order():
    """Calls pass a hook's arguments by position, in the spec's order; an implementation that
    names fewer of them, or names them in another order, still gets each by its name."""
    seen = []

    class Both:
        @hookimpl
        def gateway_upstream_attempt_done(self, ctx, attempt, error):
            seen.append(("both", ctx, attempt, error))

    class Reordered:
        @hookimpl
        def gateway_upstream_attempt_done(self, error, ctx):
            seen.append(("reordered", ctx, error))

    class OnlyAttempt:
        @hookimpl
        def gateway_upstream_attempt_done(self, attempt):
            seen.append(("only", attempt))

    hooks = manager(Both(), Reordered(), OnlyAttempt())
    hooks.notify("gateway_upstream_attempt_done", "c", "a", "e")
    await hooks.all("gateway_upstream_attempt_done", error="E", attempt="A", ctx="C")
    assert seen == [("only", "a"), ("reordered", "c", "e"), ("both", "c", "a", "e"),
                    ("only", "A"), ("reordered", "C", "E"), ("both", "C", "A", "E")]


async def test_the_last_implementations_awaitable_is_handed_back_as_it_is():
    """When only the last implementation waits, the caller awaits its awaitable directly: no
    coroutine of the hook caller's own around it (one frame fewer on every resumption)."""
    class Plain:
        @hookimpl(tryfirst=True)
        def gateway_before_upstream(self, ctx):
            return None

        @hookimpl(tryfirst=True)
        def gateway_request_received(self, ctx):
            return None

    class Waits:
        def __init__(self):
            self.awaitables = []

        async def answer(self):
            return "waited"

        @hookimpl(trylast=True)
        def gateway_before_upstream(self, ctx):
            self.awaitables.append(self.answer())
            return self.awaitables[-1]

        @hookimpl(trylast=True)
        def gateway_request_received(self, ctx):
            self.awaitables.append(self.answer())
            return self.awaitables[-1]

    waits = Waits()
    hooks = manager(Plain(), waits)
    first = hooks.first_now("gateway_before_upstream", None)
    assert first is waits.awaitables[0] and await first == "waited"
    pending = hooks.run("gateway_request_received", None)
    assert pending is waits.awaitables[1]
    await pending
