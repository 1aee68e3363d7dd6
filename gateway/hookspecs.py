"""Every hook a plugin can implement. The full contract of each is in ``docs/plugins.md``.

Hooks fire in the order below. Request hooks may be ``def`` or ``async def``; the core awaits
what they return (pluggy itself knows nothing of coroutines, see ``gateway.hookcall``). A hook
that no enabled plugin implements costs nothing: the core checks that once, at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from aiohttp import web
    from pydantic import BaseModel

    from gateway.adapter import Chunk
    from gateway.config import GatewayConfig
    from gateway.context import Outcome, Principal, RequestContext
    from gateway.errors import GatewayError
    from gateway.routing import Target
    from gateway.transport import Attempt

PROJECT = "llm_gateway"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

StreamWrapper = Callable[["AsyncIterator[Chunk]"], "AsyncIterator[Chunk]"]


@hookspec
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    """Claim top-level ``gateway.yaml`` sections: ``{name: pydantic model}``. Called for every
    installed plugin (disabled ones too, so their sections stay valid). All results used."""


@hookspec
def gateway_check_config(config: GatewayConfig) -> list[tuple[str, str]]:
    """At load time (``check-config`` too), after every section validated on its own: problems
    that span sections, as ``(field path, message)`` pairs (e.g. ``cache.backend`` set to redis
    with no ``redis`` section). Sync, side-effect free; all results are reported together."""


@hookspec
def gateway_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``llm-gateway`` sub-commands: ``subparsers.add_parser(...)``, with
    ``set_defaults(run=fn)``; the CLI calls ``fn(args)`` and exits with what it returns. All run."""


@hookspec
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    """Before the app is frozen: add routes, ``AppKey`` state and ``cleanup_ctx`` entries.
    Sync; all implementations run. ``config.section(name)`` gives a validated section.

    Runs again on every configuration reload, with that generation's own (never served) app:
    keep state under ``AppKey``s on ``app`` and read it in request hooks from ``ctx.app``;
    ``gateway.plugin_manager.carry_over`` keeps unchanged state. Routes and ``cleanup_ctx``
    entries are those of start-up (see docs/reload.md)."""


@hookspec
def gateway_startup(app: web.Application) -> Any:
    """After provider sessions are open, before the first request (of a reload's generation too).
    May be async. All run."""


@hookspec
def gateway_shutdown(app: web.Application) -> Any:
    """After the last request drained, before provider sessions close. May be async. All run;
    an error is logged and does not stop the others. Also when a reload's superseded generation
    ended its last request: ``app`` then holds only the state no newer generation carried over."""


@hookspec
def gateway_request_started(ctx: RequestContext) -> None:
    """Sync, first thing for every API request (headers only, before authentication). Observe
    only, e.g. start a span or a timer; must not block. All run."""


@hookspec
def gateway_authenticate(ctx: RequestContext) -> Principal | None:
    """Headers only, before the body is read. Return a ``Principal`` for a known key, None when
    the request carries no key this plugin knows; raise ``AuthenticationError`` for a presented
    but wrong key. First non-None wins. If auth keys are configured and every implementation
    returns None, the core answers 401."""


@hookspec
def gateway_request_received(ctx: RequestContext) -> Any:
    """Body parsed, model resolved (``ctx.targets``), nothing sent upstream yet. May annotate
    ``ctx`` or edit ``ctx.body``; may reject by raising a ``GatewayError`` (403, 429, ...).
    All run, in order, awaited."""


@hookspec
def gateway_before_upstream(ctx: RequestContext) -> Any:
    """Last chance to answer without calling a vendor: return a ``ShortCircuit`` (e.g. a cache
    hit) to skip upstream. First non-None wins; may be async."""


@hookspec
def gateway_fallback(ctx: RequestContext, target: Target) -> Any:
    """Before the first attempt on each fallback target (an alias's targets after the one the
    request started with), awaited. Raise a ``GatewayError`` to pass this target over: the
    dispatcher moves on to the next one, or answers with that error when none is left."""


@hookspec
def gateway_upstream_attempt(ctx: RequestContext, attempt: Attempt) -> None:
    """Sync, before each upstream attempt (retries and fallbacks included). May add headers to
    ``attempt.headers`` (e.g. ``traceparent``). Must not block."""


@hookspec
def gateway_upstream_attempt_done(ctx: RequestContext, attempt: Attempt, error: GatewayError | None) -> None:
    """Sync, after each upstream attempt got its response head (or failed). A failed attempt is
    reported at once; the serving one once the client has its first bytes, but before any
    response, stream-wrapper, error or request-finished hook runs."""


@hookspec
def gateway_wrap_stream(ctx: RequestContext) -> StreamWrapper | None:
    """Once per streamed response: return a function that wraps the chunk iterator (to watch,
    edit, drop or add chunks), or None. Wrappers must yield each chunk before awaiting the next
    one (never buffer the stream). No implementation means no per-chunk plugin code at all."""


@hookspec
def gateway_response(ctx: RequestContext, response: dict[str, Any]) -> Any:
    """A complete non-stream response in OpenAI shape (usage known in ``ctx.usage``). May edit
    ``response`` in place. All run, awaited."""


@hookspec
def gateway_error(ctx: RequestContext, error: GatewayError) -> Any:
    """A request failed with ``error`` (before or during streaming). Observe only. All run."""


@hookspec
def gateway_request_finished(ctx: RequestContext, outcome: Outcome) -> Any:
    """Exactly once per request, in ``finally`` (success, error, cache hit, client disconnect).
    Errors raised here are logged and swallowed. All run, awaited."""
