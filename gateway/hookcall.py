"""Calling pluggy hooks whose implementations may be coroutines.

pluggy has no async support: an ``async def`` implementation returns a coroutine, which is never
None. So no spec uses ``firstresult``; instead the hook is called through pluggy (ordering,
blocking and tracing stay pluggy's) and its results are awaited here.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pluggy

log = logging.getLogger("llm_gateway.hooks")


class Hooks:
    """Hook caller bound to one plugin manager; knows once which hooks have implementations."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._implemented = {
            name for name in dir(pm.hook)
            if name.startswith("gateway_") and getattr(pm.hook, name).get_hookimpls()
        }

    def has(self, name: str) -> bool:
        return name in self._implemented

    async def first(self, name: str, **kwargs: Any) -> Any:
        """Await results in order; return the first non-None and close unstarted coroutines."""
        results = getattr(self.pm.hook, name)(**kwargs)
        try:
            for i, res in enumerate(results):
                if inspect.isawaitable(res):
                    results[i] = None  # started: nothing left to close
                    res = await res
                if res is not None:
                    return res
            return None
        finally:
            for res in results:
                if inspect.iscoroutine(res):
                    res.close()

    async def all(self, name: str, **kwargs: Any) -> list[Any]:
        out = []
        for res in getattr(self.pm.hook, name)(**kwargs):
            out.append(await res if inspect.isawaitable(res) else res)
        return out

    async def all_safe(self, name: str, **kwargs: Any) -> None:
        """Like ``all`` but an error in one implementation is logged and the rest still run."""
        for impl in getattr(self.pm.hook, name).get_hookimpls()[::-1]:
            try:
                res = impl.function(*(kwargs[a] for a in impl.argnames))
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, name)
