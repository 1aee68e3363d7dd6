"""Calling pluggy hooks whose implementations may be coroutines.

pluggy has no async support: an ``async def`` implementation returns a coroutine, which is never
None, so ``firstresult`` cannot work and a raising implementation would strand the coroutines
pluggy already created for the others. The request hooks are therefore called here, one
implementation at a time, in pluggy's own order (reverse registration, ``tryfirst``/``trylast``
honoured, blocked plugins absent), each result awaited before the next implementation is called.
``hookwrapper``/``wrapper`` implementations are not supported on these hooks, nor on the attempt
hooks, which are called the same way (``notify``: no pluggy call machinery per upstream attempt).
``gateway_configure``, ``gateway_request_started`` and ``gateway_wrap_stream`` go through pluggy itself.
The request path calls ``first_now``/``run``/``run_safe``/``notify``: the same order and error
handling, but plain functions until an implementation returns an awaitable, so a request whose
plugins all decide at once (the in-memory limiter, cache and budgets do) makes no coroutine for
its hooks; and they take the hook's arguments by position, in its spec's order, and pass them on
so: a call with ``**kwargs`` packs and unpacks a dict, about ten times the cost of a positional
call, twice per implementation on every request.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import CoroutineType, GeneratorType
from typing import Any

import pluggy

log = logging.getLogger("llm_gateway.hooks")


class Hooks:
    """Hook caller bound to one plugin manager; knows once which hooks have implementations."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._impls = {
            name: tuple(reversed(getattr(pm.hook, name).get_hookimpls()))
            for name in dir(pm.hook) if name.startswith("gateway_")
        }
        # Every implementation is called with the spec's arguments by position, in the spec's
        # order: itself when it takes them all in that order, else through an adapter.
        self._order = {name: spec_order(pm, name) for name in self._impls}
        self._calls = {name: tuple(caller(self._order[name], impl) for impl in impls)
                       for name, impls in self._impls.items()}

    def has(self, name: str) -> bool:
        return bool(self._impls.get(name))

    def positional(self, name: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """A hook's keyword arguments in its spec's order (every one is required, as in pluggy)."""
        return tuple(kwargs[a] for a in self._order[name] or kwargs)

    async def first(self, name: str, **kwargs: Any) -> Any:
        """The first non-None result; later implementations are not called."""
        res = self.first_now(name, *self.positional(name, kwargs))
        return await res if res is not None and awaitable(res) else res

    async def all(self, name: str, **kwargs: Any) -> list[Any]:
        """Every implementation in order; the first exception stops the chain and propagates."""
        args = self.positional(name, kwargs)
        out = []
        for call in self._calls[name]:
            res = call(*args)
            out.append(await res if res is not None and awaitable(res) else res)
        return out

    async def all_safe(self, name: str, **kwargs: Any) -> None:
        """Like ``all`` but an error in one implementation is logged and the rest still run."""
        pending = self.run_safe(name, *self.positional(name, kwargs))
        if pending is not None:
            await pending

    # The request path's variants: a request's hooks are mostly plain functions (or plugins that
    # decide at once, returning a coroutine only when they must wait), so these call the
    # implementations directly and make a coroutine only from the first implementation that
    # returned an awaitable on. The caller awaits what they return when it is not None. They
    # take the hook's arguments by position, in its spec's order.

    def first_now(self, name: str, *args: Any) -> Any:
        """``first``: a plain result as it is, or an awaitable of the result."""
        calls = self._calls[name]
        for i, call in enumerate(calls):
            res = call(*args)
            if res is None:
                continue
            if awaitable(res):
                rest = calls[i + 1:]
                # The last implementation's awaitable is the answer itself: no coroutine around it.
                return self._first_rest(rest, res, args) if rest else res
            return res
        return None

    async def _first_rest(self, calls: tuple[Callable[..., Any], ...], pending: Any, args: tuple[Any, ...]) -> Any:
        res = await pending
        if res is not None:
            return res
        for call in calls:
            res = call(*args)
            if res is not None and awaitable(res):
                res = await res
            if res is not None:
                return res
        return None

    def run(self, name: str, *args: Any) -> Awaitable[Any] | None:
        """``all`` without the results: None once every implementation ran, else an awaitable
        that finishes the rest. The first exception propagates."""
        calls = self._calls[name]
        for i, call in enumerate(calls):
            res = call(*args)
            if res is not None and awaitable(res):
                rest = calls[i + 1:]
                # Waiting for the last implementation needs no coroutine of ours around it.
                return self._run_rest(rest, res, args) if rest else res
        return None

    async def _run_rest(self, calls: tuple[Callable[..., Any], ...], pending: Any, args: tuple[Any, ...]) -> None:
        await pending
        for call in calls:
            res = call(*args)
            if res is not None and awaitable(res):
                await res

    def run_safe(self, name: str, *args: Any) -> Awaitable[None] | None:
        """``all_safe``, synchronous until an implementation returns an awaitable."""
        impls, calls = self._impls[name], self._calls[name]
        for i, call in enumerate(calls):
            try:
                res = call(*args)
            except Exception:
                log.exception("plugin %s failed in %s", impls[i].plugin_name, name)
                continue
            if res is not None and awaitable(res):
                return self._run_safe_rest(name, i, res, args)
        return None

    async def _run_safe_rest(self, name: str, i: int, pending: Any, args: tuple[Any, ...]) -> None:
        impls, calls = self._impls[name], self._calls[name]
        try:
            await pending
        except Exception:
            log.exception("plugin %s failed in %s", impls[i].plugin_name, name)
        for impl, call in zip(impls[i + 1:], calls[i + 1:], strict=True):
            try:
                res = call(*args)
                if res is not None and awaitable(res):
                    await res
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, name)

    def notify(self, name: str, *args: Any) -> None:
        """A sync hook called from inside the core (attempt accounting): every implementation
        runs, and a plugin's error is logged, never raised into the request."""
        for impl, call in zip(self._impls[name], self._calls[name], strict=True):
            try:
                call(*args)
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, name)


def awaitable(res: Any) -> bool:
    """``inspect.isawaitable`` with the usual answers first: a hook returns a coroutine (an
    ``async def`` implementation) or a plain value, and the ABC check ``isawaitable`` falls back
    to costs a few hundred instructions per plain value, on every hook call of every request."""
    kind = type(res)
    if kind is CoroutineType:
        return True
    if kind is GeneratorType:  # awaitable or not by its code's flags: ask each time
        return inspect.isawaitable(res)
    return awaitable_type(kind)


@functools.lru_cache(maxsize=256)
def awaitable_type(kind: type) -> bool:
    """Whether instances of ``kind`` (not a generator) are awaitable, asked once per type (a
    principal, a short-circuit, a plugin's own objects)."""
    return issubclass(kind, Awaitable)


def spec_order(pm: pluggy.PluginManager, name: str) -> tuple[str, ...] | None:
    """The hook's argument names in its spec's order: the positional order of every call (None
    for a hook without a spec, which nothing in the gateway calls)."""
    spec = getattr(pm.hook, name).spec
    return tuple(spec.argnames) if spec is not None else None


def caller(order: tuple[str, ...] | None, impl: pluggy.HookImpl) -> Callable[..., Any]:
    """The implementation itself when it takes the spec's arguments in the spec's order (no call
    layer of ours per hook call), else an adapter that passes it the ones it names, in its order
    (pluggy lets an implementation take fewer arguments than the spec, in any order)."""
    fn, argnames = impl.function, tuple(impl.argnames)
    if order is None or argnames == order:
        return fn
    picks = tuple(order.index(a) for a in argnames)
    return lambda *args: fn(*[args[i] for i in picks])
