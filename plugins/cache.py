"""An opt-in response cache for chat, completions and embeddings.

``cache: {enabled: true, ttl_s: 300, max_entries: 10000, max_bytes: 67108864}``. Off by default.
``backend: memory`` (default) keeps answers in this process; ``backend: redis`` keeps them in Redis
(the top-level ``redis:`` section, or ``redis_url`` for a separate instance with its own eviction
policy), shared by every worker and replica. Both behave alike (see ``plugins.cache_store``).

Key: SHA-256 over the operation, the first target's provider and upstream model, with
``scope: key`` the client key's name, and the request body serialised canonically (orjson, sorted
keys) without ``stream``, ``stream_options`` and ``user``. Only complete non-stream answers are
stored, and only when every choice finished with ``stop``, ``length`` or ``tool_calls``; errors
never reach that hook. The answer is taken in ``gateway_response`` (after the other plugins edited
it) and stored in ``gateway_request_finished``, after the client has its last byte. A stored
answer also serves a streaming request: the core replays it as SSE chunks ending with ``[DONE]``.
Entries live ``ttl_s``; an answer larger than ``max_entry_bytes`` (or ``max_bytes``) is not stored.

Request ``Cache-Control: no-cache`` skips the lookup (the fresh answer is still stored);
``no-store`` skips both. The outcome is ``ctx.cache`` (``hit``, ``miss`` or ``bypass``) and the
header ``x-cache: HIT|MISS`` (a bypass is a MISS). Identical non-stream requests that miss while
one of them is upstream wait for its answer (``plugins.cache_flight``) and count as hits; with
``lock_wait_s`` on the redis backend, so do those in other processes (a lock in Redis). Auth and
rate limits run earlier in the request path, so a hit still needs a valid key and still counts as
a request (but costs no tokens). With ``scope: shared`` (default) the cache is shared by all keys
allowed to use a model; ``scope: key`` keeps each key's answers to itself.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from hashlib import sha256
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from gateway import Outcome, RequestContext, ShortCircuit, StashKey, hookimpl
from gateway.config import GatewayConfig
from gateway.keys import REDIS
from gateway.plugin_manager import carry_over, stand_down
from plugins.cache_keys import cache_control, cacheable, key_input
from plugins.cache_redis import STORE_ERRORS, unpack_found
from plugins.cache_settings import CacheSettings
from plugins.cache_state import CacheState, Pending, in_background, store, store_later
from plugins.cache_store import CacheBackend, InProcessLRU, RedisStore

__all__ = ["CacheBackend", "CacheSettings", "CacheState", "InProcessLRU", "RedisStore"]

CACHEABLE_OPS = frozenset({"chat", "completions", "embeddings"})

CACHE: web.AppKey[CacheState] = web.AppKey("llm_gateway.cache")
PENDING: StashKey[Pending] = StashKey("cache.pending")
# A shared store's lookup started with the request's admission: its key, the lookup, and what the
# key was hashed from (the same again at gateway_before_upstream: the same key, not hashed again).
EARLY: StashKey[tuple[str, asyncio.Future[Any], bytes]] = StashKey("cache.early")


def mark(ctx: RequestContext, outcome: str) -> None:
    ctx.cache = outcome
    ctx.response_headers["x-cache"] = "HIT" if outcome == "hit" else "MISS"


def make_backend(settings: CacheSettings, app: web.Application) -> CacheBackend:
    if settings.backend == "redis":
        # gateway_check_config refused a redis backend without a redis section at load time.
        return RedisStore(app[REDIS], settings.redis_url, settings.max_bytes, lock_wait_s=settings.lock_wait_s)
    return InProcessLRU(settings.max_entries, settings.max_bytes)


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"cache": CacheSettings}


@hookimpl
def gateway_check_config(config: GatewayConfig) -> list[tuple[str, str]]:
    settings: CacheSettings | None = config.section("cache")
    if settings is not None and settings.backend == "redis" and config.redis is None:
        return [("cache.backend", "'redis' needs a top-level 'redis' section (its url, timeouts and pool)")]
    return []


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    settings: CacheSettings = config.section("cache") or CacheSettings()
    if not settings.enabled:
        stand_down(app, sys.modules[__name__])  # cache off: nothing on the request path
        return
    # Kept over a configuration reload (entries and all) when the cache settings did not change.
    app[CACHE] = carry_over(app, CACHE, (settings, config.redis), lambda: CacheState(
        make_backend(settings, app), settings.ttl_s, settings.scope == "key", settings.max_entry_bytes))


@hookimpl
def gateway_request_received(ctx: RequestContext) -> None:
    """A Redis lookup starts with the admission (the limiter's ``trylast`` implementation is next,
    in this loop iteration): one write, one round trip. ``gateway_before_upstream`` uses it after
    admission, for the same key only (docs/scaling-out.md#the-requests-one-round-trip)."""
    state = ctx.app.get(CACHE)
    if state is None or state.local is not None or not isinstance(state.backend, RedisStore):
        return  # in memory: nothing to start early
    op = ctx.op
    if op is None or not ctx.targets or op.canonical.name not in CACHEABLE_OPS:
        return
    if ctx.request.headers.get("Cache-Control") and {"no-cache", "no-store"} & cache_control(ctx):
        return
    data = key_input(ctx, state.per_key)
    if data is None:
        return
    key = sha256(data).hexdigest()
    # Not while this process fetches or stores the same answer: never a value read before that store.
    if key not in state.flights and (lookup := state.backend.lookup(key)) is not None:
        ctx[EARLY] = (key, lookup, data)


@hookimpl
def gateway_before_upstream(ctx: RequestContext) -> ShortCircuit | Awaitable[ShortCircuit | None] | None:
    """Decided here and now on the memory backend; a coroutine for a shared store's answer, or
    to wait for an identical request's. The common case (memory, no Cache-Control) builds no
    directive set and makes no coroutine."""
    state = ctx.app.get(CACHE)
    op = ctx.op
    # A dialect's request is cached as the canonical one it became (keyed apart by its op name).
    if state is None or op is None or op.canonical.name not in CACHEABLE_OPS or not ctx.targets:
        return None
    data = key_input(ctx, state.per_key)
    if data is None:
        return None
    early = ctx.get(EARLY) if state.local is None else None
    key = early[0] if early is not None and early[2] == data else sha256(data).hexdigest()
    if ctx.request.headers.get("Cache-Control"):  # most requests send none: no set to build
        directives = cache_control(ctx)
        if "no-cache" in directives or "no-store" in directives:
            return bypass(ctx, state, key, "no-store" not in directives)
    local = state.local
    if local is None:
        return shared_lookup(ctx, state, key)
    if ctx.stream:  # a stream never waits for a whole answer (its TTFT), nor makes others wait
        return answer(ctx, state, key, local.lookup(key))
    if not state.flights.lead(key):
        return followed(ctx, state, key)
    return led(ctx, state, key, local.lookup(key))


def bypass(ctx: RequestContext, state: CacheState, key: str, store: bool) -> None:
    """``no-cache`` (no lookup, answer stored) or ``no-store`` (neither). A fresh answer to store
    leads a flight if none is out: identical requests that miss until it is stored get it."""
    ctx.stash[PENDING] = Pending(state, key, store, leads=store and not ctx.stream and state.flights.lead(key))
    mark(ctx, "bypass")


async def shared_lookup(ctx: RequestContext, state: CacheState, key: str) -> ShortCircuit | None:
    """A stream's lookup, or a flight's leader's claim; else the answer of the request it follows.
    The lookup started with the admission is used when it is for this key (a claim with a lock
    takes only a hit from it: a miss must take the lock)."""
    leads = not ctx.stream and state.flights.lead(key)
    if not ctx.stream and not leads:
        return answer(ctx, state, key, await state.flights.follow(key))
    early = ctx.get(EARLY)
    if early is not None and early[0] == key:
        try:
            raw = unpack_found(await early[1])
        except STORE_ERRORS:
            raw = None
        if raw is not None or not leads or not getattr(state.backend, "lock_wait_s", 0):
            return led(ctx, state, key, raw) if leads else answer(ctx, state, key, raw)
    if leads:
        return led(ctx, state, key, await state.backend.claim(key))
    return answer(ctx, state, key, await state.backend.get(key))


async def followed(ctx: RequestContext, state: CacheState, key: str) -> ShortCircuit | None:
    """The answer of the identical request this one follows (None: go upstream)."""
    return answer(ctx, state, key, await state.flights.follow(key))


def led(ctx: RequestContext, state: CacheState, key: str, raw: bytes | None) -> ShortCircuit | None:
    """The lookup of the request that leads this key's flight."""
    if raw is None:
        ctx.stash[PENDING] = Pending(state, key, True, True)
        mark(ctx, "miss")
        return None
    state.flights.land(key, raw)  # a hit: identical requests that came meanwhile share it
    state.flights.end(key)
    return hit(ctx, raw)


def answer(ctx: RequestContext, state: CacheState, key: str, raw: bytes | None) -> ShortCircuit | None:
    if raw is None:
        ctx.stash[PENDING] = Pending(state, key, True)
        mark(ctx, "miss")
        return None
    return hit(ctx, raw)


def hit(ctx: RequestContext, raw: bytes) -> ShortCircuit:
    mark(ctx, "hit")
    entry = orjson.loads(raw)
    # The provider that produced the answer still "served" it (the contract's x-gateway-provider).
    return ShortCircuit(entry["response"], {"x-cache": "HIT", "x-gateway-provider": entry["provider"]})


@hookimpl(trylast=True)
def gateway_response(ctx: RequestContext, response: dict[str, Any]) -> None:
    """Last in line, so what is stored is what the client gets after other plugins' edits. Not a
    coroutine: it only serialises and hands the answer to the flight."""
    pending = ctx.stash.get(PENDING)
    if pending is None or not pending.store or ctx.stream or not cacheable(response):
        return
    value = orjson.dumps({"provider": ctx.provider, "response": response})
    state = pending.state
    if state.max_entry_bytes is not None and len(value) > state.max_entry_bytes:
        return
    pending.value = value
    if pending.leads:
        state.flights.land(pending.key, value)  # the followers answer now, with the leader


@hookimpl(trylast=True)
def gateway_request_finished(ctx: RequestContext, outcome: Outcome) -> Any:
    """After the client has its last byte. A remote store is not awaited, so its round trip delays
    neither the other plugins' bookkeeping nor the next request on this connection; until it is
    done the flight hands identical requests the answer."""
    pending = ctx.stash.get(PENDING)
    if pending is None:
        return None
    state, value, backend = pending.state, pending.value, pending.state.backend
    if value is None:
        if pending.leads:
            state.flights.end(pending.key)
            if backend.remote and (not isinstance(backend, RedisStore) or pending.key in backend.held):
                in_background(state, backend.abandon(pending.key))  # a lock to release
        return None
    if state.local is not None:  # in memory: done before the handler returns
        state.local.put(pending.key, value, state.ttl_s)
        if pending.leads:
            state.flights.end(pending.key)
        return None
    if not backend.remote:
        return store(state, pending, value)
    store_later(state, pending, value)
    return None


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    state = app.get(CACHE)
    if state is not None:
        if state.storing:  # each bounded by the store's command timeout
            await asyncio.gather(*state.storing, return_exceptions=True)
        await state.backend.close()
