"""``llm-gateway keys create|list|revoke``: the admin API's key operations, straight on the store
named by the config's ``store.url`` (no running gateway needed; running ones pick the change up on
their next poll, within ``store.poll_interval_s``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from gateway.errors import ConfigError, GatewayError
from gateway.loader import load
from plugins.governance.admin_api import new_key
from plugins.governance.admin_models import KeyInput, key_json, parse
from plugins.governance.settings import StoreConfig
from plugins.governance.store import Store, StoreError, open_store, replace
from plugins.governance.virtual_keys import KeyIndex


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="create, list or revoke virtual keys")
    keys.add_argument("--config", help="path to gateway.yaml (default: $LLM_GATEWAY_CONFIG or ./gateway.yaml)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--team")
    create.add_argument("--models", help="comma-separated model patterns, e.g. 'oai/*,smart'")
    create.add_argument("--budget-usd", type=float)
    create.add_argument("--budget-period", choices=("day", "week", "month"))
    create.add_argument("--expires-at", help="ISO 8601 date-time")
    actions.add_parser("list", help="list keys (masked) as JSON lines")
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    keys.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        loaded = load(args.config)
    except ConfigError as exc:
        for where, msg in exc.problems:
            print(f"{where}: {msg}" if where else msg, file=sys.stderr)
        return 2
    settings = loaded.config.section("store") or StoreConfig()
    try:
        return asyncio.run(act(open_store(settings.url.get_secret_value()), args))
    except (StoreError, GatewayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def key_input(args: argparse.Namespace) -> KeyInput:
    body: dict[str, Any] = {"name": args.name}
    for field in ("team", "budget_usd", "budget_period", "expires_at"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    return parse(KeyInput, body)  # type: ignore[return-value]


async def act(store: Store, args: argparse.Namespace) -> int:
    await store.open()
    try:
        index = KeyIndex()
        index.apply(*await store.changes_since(0))
        if args.action == "create":
            record, secret = new_key(index, key_input(args))
            print(orjson.dumps({**key_json(await store.save_key(record), 0.0), "key": secret}).decode())
        elif args.action == "list":
            for key in sorted(index.keys.values(), key=lambda k: k.created_at):
                print(orjson.dumps(key_json(key, 0.0)).decode())
        else:
            key = index.keys.get(args.id)
            if key is None:
                print(f"error: no key with id {args.id!r}", file=sys.stderr)
                return 1
            if key.revoked_at is None:
                key = await store.save_key(replace(key, revoked_at=time.time(), updated_at=time.time()))
            print(orjson.dumps(key_json(key, 0.0)).decode())
        return 0
    finally:
        await store.close()
