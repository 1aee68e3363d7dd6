"""``llm-gateway`` command line: serve, check-config, providers, --version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.errors import ConfigError
from gateway.loader import config_path, load
from gateway.plugin_manager import make_plugin_manager
from gateway.registry import installed_adapters


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-gateway", description="OpenAI-compatible LLM gateway")
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the gateway")
    p_serve.add_argument("--config", help="path to gateway.yaml (default: $LLM_GATEWAY_CONFIG or ./gateway.yaml)")
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--workers", type=int, help="worker processes sharing the port (SO_REUSEPORT)")
    p_check = sub.add_parser("check-config", help="validate a config file")
    p_check.add_argument("path", nargs="?")
    sub.add_parser("providers", help="list installed provider adapter types")
    make_plugin_manager().hook.gateway_cli_commands(subparsers=sub)  # e.g. `keys`, from governance
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:
        return int(args.run(args))

    if args.command == "providers":
        for name, ep in sorted(installed_adapters().items()):
            dist = ep.dist.name if ep.dist else "?"
            print(f"{name:<16} {ep.value}  ({dist})")
        return 0
    path = args.config if args.command == "serve" else args.path
    try:
        loaded = load(path)
    except ConfigError as exc:
        print(f"{config_path(path)}: invalid configuration", file=sys.stderr)
        for where, msg in exc.problems:
            print(f"  {where}: {msg}" if where else f"  {msg}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{config_path(path)}: OK ({len(loaded.config.providers)} providers)")
        return 0
    from gateway.server import configure_logging, serve

    configure_logging()
    return serve(loaded, path, args.host, args.port, args.workers)
