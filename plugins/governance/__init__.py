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
from gateway.keys import GATEWAY, REDIS
from gateway.plugin_manager import stand_down
from plugins.governance.accounting import Accounting
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
    gov = Governance(config, admin, config.section("store") or StoreConfig(), config.section("pricing"))
    app[GOVERNANCE] = gov
    pm = app[GATEWAY].pm
    if admin is not None:
        app[ADMIN] = gov.admin  # type: ignore[assignment]
        pm.register(KeyAuthenticator(gov.index, static_keys=bool(config.auth.keys)), name="governance.keys")
        add_routes(app, gov)
    # The static-key plugin checks model permissions when it runs; without static keys it stood down.
    accounting = Accounting(gov, check_models=not config.auth.keys)
    app[ACCOUNTING] = accounting
    pm.register(accounting, name="governance.accounting")


@hookimpl
async def gateway_startup(app: web.Application) -> None:
    gov = app[GOVERNANCE]
    await gov.start(app.get(REDIS) and app[REDIS].client())
    register_metrics(app, gov)


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    await app[GOVERNANCE].stop()


def register_metrics(app: web.Application, gov: Governance) -> None:
    from plugins.metrics import METRICS  # the metrics plugin's registry, when it is enabled

    metrics: Any = app.get(METRICS)
    if metrics is None:
        return
    from plugins.governance.cost_metrics import GovernanceCollector

    metrics.registry.register(GovernanceCollector(gov, app[ACCOUNTING], metrics.provider, metrics.model))
