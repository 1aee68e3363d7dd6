"""Builds the pluggy plugin manager: built-in plugins first, then the ``llm_gateway.plugins``
entry points (so third-party implementations run before the built-ins), then the blocked list."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import pluggy
from aiohttp import web

from gateway import hookspecs
from gateway.keys import GATEWAY

PLUGIN_ENTRY_POINT_GROUP = "llm_gateway.plugins"

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
