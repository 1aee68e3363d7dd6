"""``build_app``: routes, the gateway run-time object, and the start-up/shutdown lifecycle."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from gateway.context import RequestContext
from gateway.dialect import Dialect, load_dialects
from gateway.errors import GatewayError, InvalidRequestError
from gateway.handler import authenticate, handle, request_id
from gateway.keys import GATEWAY, REDIS, RELOADER
from gateway.loader import Loaded
from gateway.operations import OPERATIONS
from gateway.relay import error_response, json_response
from gateway.reload import Reloader
from gateway.runtime import Gateway


def build_app(loaded: Loaded) -> web.Application:
    config = loaded.config
    server = config.server
    app = web.Application(
        client_max_size=server.max_body_bytes,
        handler_args={"max_field_size": server.max_header_bytes, "max_line_size": server.max_header_bytes},
    )
    gw = Gateway(config, loaded.pm)
    gw.app = app
    live = Reloader(app, gw, loaded)
    app[GATEWAY], app[RELOADER] = gw, live
    if gw.redis is not None:
        app[REDIS] = gw.redis
    dialects = load_dialects()
    for op in (*OPERATIONS, *(op for d in dialects for op in d.operations())):
        resource = app.router.add_resource(op.path)
        # The generations bound here, not looked up through request.app per request; each
        # request takes the current generation once (configuration reload).
        resource.add_route("POST", partial(handle, live=live, op=op))
        resource.add_route("*", method_not_allowed)
    for dialect in dialects:
        for method, path, route in dialect.routes(live):
            app.router.add_route(method, path, route)
    app.router.add_get("/v1/models", partial(list_models, dialects=tuple(dialects)))
    app.router.add_get("/health", liveness)
    app.router.add_get("/health/ready", readiness)
    app.router.add_get("/health/providers", provider_health)
    app.cleanup_ctx.append(lifecycle)
    loaded.pm.hook.gateway_configure(config=config, app=app)
    gw.refresh_hooks()  # configure may have registered hook objects (e.g. tracing, when enabled)
    # Last, so plugin routes (e.g. /metrics) take precedence over the JSON 404.
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Provider sessions and health checks, ``gateway_startup``; at the end ``gateway_shutdown``,
    then sessions and shared-store connections (after the plugins, which may flush to them)."""
    live = app[RELOADER]
    try:
        await live.start()
        yield
    finally:
        await live.stop()


async def list_models(request: web.Request, dialects: tuple[Dialect, ...] = ()) -> web.Response:
    live = request.app[RELOADER]
    gw = live.enter()
    try:
        ctx = RequestContext(request, None, request_id(request), gw.app)
        # A dialect's client gets the list, and its errors, in its dialect's shape.
        dialect = next((d for d in dialects if d.claims(request)), None)
        try:
            await authenticate(gw, ctx)
        except GatewayError as exc:
            error = gw.scrubber.scrub_error(exc)
            return dialect.error_response(error, {}) if dialect is not None else error_response(error)
        listing = await gw.models.listing()
        if dialect is not None:
            listing = dialect.models_listing(listing)
        return json_response(listing, {"x-request-id": ctx.request_id})
    finally:
        live.leave(gw)


async def liveness(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    live = request.app[RELOADER]
    ready = live.ready and not live.draining
    return json_response({"status": "ready" if ready else "not_ready", "draining": live.draining},
                         status=200 if ready else 503)


async def provider_health(request: web.Request) -> web.Response:
    gw = request.app[RELOADER].current
    providers = []
    for p in gw.registry:
        h = p.health
        providers.append({
            "name": p.name,
            "type": p.type,
            "status": h.status,
            "circuit": p.breaker.state,
            # Open, yet sent requests because every target of their route was open.
            "panic": p.breaker.in_panic,
            "panic_requests": p.breaker.panics,
            "last_panic": p.breaker.last_panic,
            "in_flight": p.in_flight,
            "last_latency_ms": None if h.last_latency_s is None else round(h.last_latency_s * 1000, 2),
            "last_error": None if h.last_error is None else gw.scrubber.scrub(h.last_error),
            "last_checked": h.last_checked,
            "last_success": h.last_success,
            "last_failure": h.last_failure,
        })
    return json_response({"time": time.time(), "providers": providers})


async def not_found(request: web.Request) -> web.Response:
    return error_response(InvalidRequestError(
        f"Unknown endpoint: {request.method} {request.path}", code="unknown_endpoint", status=404
    ))


async def method_not_allowed(request: web.Request) -> web.Response:
    return error_response(InvalidRequestError(
        f"Method {request.method} is not allowed on {request.path}", code="method_not_allowed", status=405
    ), {"Allow": "POST"})
