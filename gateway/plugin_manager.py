"""Builds the pluggy plugin manager: built-in plugins first, then the ``llm_gateway.plugins``
entry points (so third-party implementations run before the built-ins), then the blocked list."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pluggy
from aiohttp import web

from gateway import hookspecs
from gateway.keys import GATEWAY

PLUGIN_ENTRY_POINT_GROUP = "llm_gateway.plugins"
T = TypeVar("T")

# Name (as used in ``plugins.disabled``) -> module. Built-ins are ordinary plugins: they use the
# same hooks as third parties and reach no core internals.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("redaction", "plugins.redaction"),
    ("auth", "plugins.auth"),
    ("ratelimit", "plugins.ratelimit"),
    ("cache", "plugins.cache"),
    ("metrics", "plugins.metrics"),
    ("tracing", "plugins.tracing"),
    ("access_log", "plugins.access_log"),
    ("governance", "plugins.governance"),
    ("dashboard", "plugins.dashboard"),
)


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, module in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module), name=name)
    pm.load_setuptools_entrypoints(PLUGIN_ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, plugin in pm.list_name_plugin() if plugin is not None)


def stand_down(app: web.Application, plugin: object) -> None:
    """For a plugin with nothing to do under this config (e.g. a cache not enabled): take it off
    the request path from ``gateway_configure``, so none of its hooks costs anything per request."""
    app[GATEWAY].pm.unregister(plugin)


def disable(pm: pluggy.PluginManager, names: Iterable[str]) -> None:
    for name in names:
        pm.set_blocked(name)


def carry_over(app: web.Application, key: web.AppKey[T], settings: Any, build: Callable[[], T | None]) -> T | None:
    """For ``gateway_configure``: the plugin state to keep under ``key``, carried over a
    configuration reload when nothing it depends on changed.

    ``settings`` is whatever the state is built from (config sections, compared with ``==``).
    When the generation before this one (if any: see ``gateway.reload``) built ``key`` from equal
    settings, its very object is returned, with everything it learned (rate-limit buckets, cached
    responses, open connections); otherwise ``build()``. Store the result under ``key`` as is: an
    object that a newer generation holds under any key is not given to ``gateway_shutdown`` when
    the older one retires, so carry whole objects, never parts of one."""
    gw = app[GATEWAY]
    gw.carried[key] = settings
    previous = gw.previous
    if (previous is not None and previous.app is not None and key in previous.app
            and key in previous.carried and previous.carried[key] == settings):
        return previous.app[key]
    return build()
