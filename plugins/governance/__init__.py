"""Governance: virtual keys, teams, budgets and spend (built-in plugin ``governance``).

Switched on by any of the ``admin``, ``store`` and ``pricing`` sections (see
``plugins.governance.settings``); with none of them it stands down and costs nothing. The request
path (``virtual_keys.KeyAuthenticator``, ``accounting.Accounting``) reads memory only; the store
is reached by the admin API, the change poll and the spend writer. docs/governance.md has the
whole design.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway import hookimpl
from gateway.config import GatewayConfig
from gateway.keys import GATEWAY, REDIS, RELOADER
from gateway.plugin_manager import carry_over, stand_down
from plugins.governance.accounting import Accounting, RemoteAnswers
from plugins.governance.admin_api import add_routes
from plugins.governance.admin_auth import ADMIN
from plugins.governance.service import Governance
from plugins.governance.settings import AdminConfig, PricingConfig, StoreConfig
from plugins.governance.virtual_keys import KeyAuthenticator

GOVERNANCE: web.AppKey[Governance] = web.AppKey("llm_gateway.governance")
ACCOUNTING: web.AppKey[Accounting] = web.AppKey("llm_gateway.governance.accounting")
SECTIONS = ("admin", "store", "pricing")


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"admin": AdminConfig, "store": StoreConfig, "pricing": PricingConfig}


@hookimpl
def gateway_check_config(config: GatewayConfig) -> list[tuple[str, str]]:
    problems = []
    pricing = config.section("pricing")
    names = {p.name for p in config.providers}
    for name in (pricing.root if pricing is not None else {}):
        if name.partition("/")[0] not in names:
            problems.append((f"pricing.{name}", f"'{name.partition('/')[0]}' is not a configured provider"))
    return problems


@hookimpl
def gateway_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    from plugins.governance.cli import add_commands

    add_commands(subparsers)


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    if all(config.section(name) is None for name in SECTIONS):
        stand_down(app, sys.modules[__name__])  # nothing configured: nothing on any path
        return
    admin = config.section("admin")
    store = config.section("store") or StoreConfig()
    pricing = config.section("pricing")
    # Kept over a configuration reload (key index, budgets, spend buffer, store connection, cost
    # counters) while nothing it is built from changed; else the new one starts and the old one
    # stops once its last request is done.
    settings = (admin, store, pricing, config.redis, bool(config.auth.keys),
                [(p.name, p.type, tuple(p.models)) for p in config.providers])
    gov = carry_over(app, GOVERNANCE, settings, lambda: Governance(config, admin, store, pricing))
    accounting = carry_over(app, ACCOUNTING, settings, lambda: Accounting(gov, check_models=not config.auth.keys))
    assert gov is not None and accounting is not None
    app[GOVERNANCE], app[ACCOUNTING] = gov, accounting
    pm = app[GATEWAY].pm
    if admin is not None:
        app[ADMIN] = gov.admin  # type: ignore[assignment]
        pm.register(KeyAuthenticator(gov.index, static_keys=bool(config.auth.keys)), name="governance.keys")
        add_routes(app, current_governance)  # a reload's app is never served: start-up's routes stay
    # The static-key plugin checks model permissions when it runs; without static keys it stood down.
    pm.register(accounting, name="governance.accounting")
    if config.redis is not None:  # the budget counters are in Redis: admission's answer is awaited
        pm.register(RemoteAnswers(accounting), name="governance.remote_answers")


def current_governance(request: web.Request) -> Governance | None:
    """The governance of the configuration generation now in force (see docs/reload.md)."""
    live = request.app.get(RELOADER)
    app = live.current.app if live is not None and live.current.app is not None else request.app
    return app.get(GOVERNANCE)


@hookimpl
async def gateway_startup(app: web.Application) -> None:
    gov = app[GOVERNANCE]
    await gov.start(app.get(REDIS))
    register_metrics(app, gov)


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    gov = app.get(GOVERNANCE)  # absent on a retiring generation whose governance was carried over
    if gov is not None:
        await gov.stop()


def register_metrics(app: web.Application, gov: Governance) -> None:
    from plugins.metrics import METRICS  # the metrics plugin's registry, when it is enabled

    metrics: Any = app.get(METRICS)
    if metrics is None:
        return
    from plugins.governance.cost_metrics import CostCounters, GovernanceCollector

    # Cost counters summed over workers, once per process; every generation's accounting feeds them.
    counters = metrics.flushed_with("governance.cost", lambda r: CostCounters(r, metrics.provider, metrics.model))
    counters.follow(app[ACCOUNTING])
    # One collector per process, reading the governance of the configuration now in force.
    collector = metrics.process_collector("governance", lambda: GovernanceCollector(gov))
    collector.gov = gov
