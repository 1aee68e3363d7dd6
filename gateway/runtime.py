"""The gateway's run-time object: config, plugins, providers and router, kept on the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.dispatch import Dispatcher
from gateway.hookcall import Hooks
from gateway.models_catalog import ModelCatalog
from gateway.redis_client import RedisConnections
from gateway.registry import ProviderRegistry
from gateway.routing import Router
from gateway.secrets import Scrubber

if TYPE_CHECKING:
    import pluggy

    from gateway.config import GatewayConfig
    from gateway.context import RequestContext
    from gateway.hookspecs import StreamWrapper


@dataclass(slots=True)
class ShortCircuit:
    """A complete OpenAI-shaped response produced without calling a vendor (e.g. a cache hit)."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Gateway:
    """One generation of the run-time state (see ``gateway.reload``): a request keeps the
    generation it started on. ``previous`` (during a reload only) lends unchanged providers,
    shared-store connections and, through ``carry_over``, plugin state."""

    def __init__(self, config: GatewayConfig, pm: pluggy.PluginManager, previous: Gateway | None = None) -> None:
        self.config = config
        self.pm = pm
        self.previous = previous
        self.registry = ProviderRegistry(config, previous.registry if previous is not None else None)
        self.router = Router(self.registry.providers, config.providers, config.models)
        self.models = ModelCatalog(self.registry, self.router.aliases, config.server.models_cache_ttl_s)
        # Shared-store connections, when configured; pools open lazily in this process's loop.
        self.redis: RedisConnections | None = None
        if previous is not None and previous.redis is not None and previous.config.redis == config.redis:
            self.redis = previous.redis
        elif config.redis is not None:
            self.redis = RedisConnections(config.redis)
        self.app: web.Application | None = None  # the app its plugins were configured on
        self.in_flight = 0  # requests running on this generation
        self.carried: dict[Any, Any] = {}  # plugin state key -> the settings it was built from
        # Masks secrets in vendor error text before a client, hook or log sees it.
        # Error text goes to clients: no tail of our own key either.
        self.scrubber = Scrubber(config.secrets, keep_tail=False)
        self.refresh_hooks()

    def refresh_hooks(self) -> None:
        """Decide once which hooks have implementations, so an unused hook costs nothing per
        request. Called again after ``gateway_configure``, where plugins may register more."""
        self.hooks = Hooks(self.pm)
        self.dispatcher = Dispatcher(self.hooks, self.scrubber)
        has = self.hooks.has
        self.on_request_started = has("gateway_request_started")
        self.on_authenticate = has("gateway_authenticate")
        self.auth_required = bool(self.config.auth.keys)  # fail closed, whatever the plugins
        self.on_request_received = has("gateway_request_received")
        self.on_before_upstream = has("gateway_before_upstream")
        self.on_response = has("gateway_response")
        self.on_error = has("gateway_error")
        self.on_request_finished = has("gateway_request_finished")
        self.on_wrap_stream = has("gateway_wrap_stream")

    def stream_wrappers(self, ctx: RequestContext) -> list[StreamWrapper]:
        if not self.on_wrap_stream:
            return []
        return [w for w in self.pm.hook.gateway_wrap_stream(ctx=ctx) if w is not None]
