"""Calling pluggy hooks whose implementations may be coroutines.

pluggy has no async support: an ``async def`` implementation returns a coroutine, which is never
None, so ``firstresult`` cannot work and a raising implementation would strand the coroutines
pluggy already created for the others. The request hooks are therefore called here, one
implementation at a time, in pluggy's own order (reverse registration, ``tryfirst``/``trylast``
honoured, blocked plugins absent), each result awaited before the next implementation is called.
``hookwrapper``/``wrapper`` implementations are not supported on these hooks, nor on the attempt
hooks, which are called the same way (``notify``: no pluggy call machinery per upstream attempt).
``gateway_configure``, ``gateway_request_started`` and ``gateway_wrap_stream`` go through pluggy itself.
The request path calls ``first_now``/``run``/``run_safe``: the same order and error handling, but
plain functions until an implementation returns an awaitable, so a request whose plugins all
decide at once (the in-memory limiter, cache and budgets do) makes no coroutine for its hooks.
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
        # The hook's callers pass every argument of its spec, so an implementation that takes
        # them all is called with the keywords as given, without picking them out one by one.
        self._calls = {name: tuple(caller(pm, name, impl) for impl in impls) for name, impls in self._impls.items()}

    def has(self, name: str) -> bool:
        return bool(self._impls.get(name))

    async def first(self, name: str, **kwargs: Any) -> Any:
        """The first non-None result; later implementations are not called."""
        res = self.first_now(name, **kwargs)
        return await res if res is not None and awaitable(res) else res

    async def all(self, name: str, **kwargs: Any) -> list[Any]:
        """Every implementation in order; the first exception stops the chain and propagates."""
        out = []
        for call in self._calls[name]:
            res = call(**kwargs)
            out.append(await res if res is not None and awaitable(res) else res)
        return out

    async def all_safe(self, name: str, **kwargs: Any) -> None:
        """Like ``all`` but an error in one implementation is logged and the rest still run."""
        pending = self.run_safe(name, **kwargs)
        if pending is not None:
            await pending

    # The request path's variants: a request's hooks are mostly plain functions (or plugins that
    # decide at once, returning a coroutine only when they must wait), so these call the
    # implementations directly and make a coroutine only from the first implementation that
    # returned an awaitable on. The caller awaits what they return when it is not None.

    def first_now(self, name: str, **kwargs: Any) -> Any:
        """``first``: a plain result as it is, or an awaitable of the result."""
        calls = self._calls[name]
        for i, call in enumerate(calls):
            res = call(**kwargs)
            if res is None:
                continue
            if awaitable(res):
                return self._first_rest(calls[i + 1:], res, kwargs)
            return res
        return None

    async def _first_rest(self, calls: tuple[Callable[..., Any], ...], pending: Any, kwargs: dict[str, Any]) -> Any:
        res = await pending
        if res is not None:
            return res
        for call in calls:
            res = call(**kwargs)
            if res is not None and awaitable(res):
                res = await res
            if res is not None:
                return res
        return None

    def run(self, name: str, **kwargs: Any) -> Awaitable[None] | None:
        """``all`` without the results: None once every implementation ran, else an awaitable
        that finishes the rest. The first exception propagates."""
        calls = self._calls[name]
        for i, call in enumerate(calls):
            res = call(**kwargs)
            if res is not None and awaitable(res):
                return self._run_rest(calls[i + 1:], res, kwargs)
        return None

    async def _run_rest(self, calls: tuple[Callable[..., Any], ...], pending: Any, kwargs: dict[str, Any]) -> None:
        await pending
        for call in calls:
            res = call(**kwargs)
            if res is not None and awaitable(res):
                await res

    def run_safe(self, name: str, **kwargs: Any) -> Awaitable[None] | None:
        """``all_safe``, synchronous until an implementation returns an awaitable."""
        impls, calls = self._impls[name], self._calls[name]
        for i, call in enumerate(calls):
            try:
                res = call(**kwargs)
            except Exception:
                log.exception("plugin %s failed in %s", impls[i].plugin_name, name)
                continue
            if res is not None and awaitable(res):
                return self._run_safe_rest(name, i, res, kwargs)
        return None

    async def _run_safe_rest(self, name: str, i: int, pending: Any, kwargs: dict[str, Any]) -> None:
        impls, calls = self._impls[name], self._calls[name]
        try:
            await pending
        except Exception:
            log.exception("plugin %s failed in %s", impls[i].plugin_name, name)
        for impl, call in zip(impls[i + 1:], calls[i + 1:], strict=True):
            try:
                res = call(**kwargs)
                if res is not None and awaitable(res):
                    await res
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, name)

    def notify(self, name: str, **kwargs: Any) -> None:
        """A sync hook called from inside the core (attempt accounting): every implementation
        runs, and a plugin's error is logged, never raised into the request."""
        for impl, call in zip(self._impls[name], self._calls[name], strict=True):
            try:
                call(**kwargs)
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


def caller(pm: pluggy.PluginManager, name: str, impl: pluggy.HookImpl) -> Callable[..., Any]:
    """The implementation itself when it takes every argument of the spec (no call layer of
    ours per hook call), else an adapter that passes it the arguments it names."""
    fn, argnames = impl.function, impl.argnames
    spec = getattr(pm.hook, name).spec
    if spec is not None and set(argnames) == set(spec.argnames):
        return fn
    return lambda **kwargs: fn(*(kwargs[a] for a in argnames))
