"""``llm-gateway`` command line: serve, check-config, reload, providers, --version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.errors import ConfigError
from gateway.loader import config_path, load
from gateway.pid_file import signal_reload
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
    p_serve.add_argument("--pid-file", help="write the server's PID here (default: server.pid_file, else none)")
    add_reload_command(sub)
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
    if args.command == "reload" and args.pid_file:
        return reload_server(args.pid_file)
    path = args.config if args.command in ("serve", "reload") else args.path
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
    if args.command == "reload":
        return reload_server(loaded.config.server.pid_file)
    from gateway.server import configure_logging, serve

    configure_logging()
    return serve(loaded, path, args.host, args.port, args.workers, args.pid_file)


def add_reload_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p_reload = sub.add_parser("reload", help="make a running server re-read its config file (SIGHUP)")
    p_reload.add_argument("--config", help="the config whose server.pid_file names the server")
    p_reload.add_argument("--pid-file", help="the running server's PID file (default: server.pid_file)")


def reload_server(pid_file: str | None) -> int:
    """The file was validated above (when read from --config); the server validates it again
    and keeps its configuration if it is invalid."""
    if not pid_file:
        print("llm-gateway reload: no PID file: pass --pid-file or set server.pid_file", file=sys.stderr)
        return 2
    try:
        pid = signal_reload(pid_file)
    except LookupError as exc:
        print(f"llm-gateway reload: {exc}", file=sys.stderr)
        return 1
    print(f"llm-gateway reload: sent SIGHUP to {pid}")
    return 0
