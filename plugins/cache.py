"""An opt-in response cache for chat, completions and embeddings.

``cache: {enabled: true, ttl_s: 300, max_entries: 10000, max_bytes: 67108864}``. Off by default.

Key: SHA-256 over the operation, the first target's provider and upstream model, and the request
body serialised canonically (orjson, sorted keys) without ``stream``, ``stream_options`` and
``user``. Only complete non-stream answers are stored (``gateway_response``, after the other
plugins edited it), and only when every choice finished with ``stop``, ``length`` or
``tool_calls``; errors never reach that hook. A stored answer also serves a streaming request: the
core replays it as SSE chunks ending with ``[DONE]``. Entries live ``ttl_s``; the in-process store
is an LRU bounded by entry count and by bytes.

Request ``Cache-Control: no-cache`` skips the lookup (the fresh answer is still stored);
``no-store`` skips both. The outcome is ``ctx.cache`` (``hit``, ``miss`` or ``bypass``) and the
header ``x-cache: HIT|MISS`` (a bypass is a MISS). Auth and rate limits run earlier in the
request path, so a hit still needs a valid key and still counts as a request; the cache is shared
by all keys allowed to use a model.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from gateway import RequestContext, ShortCircuit, StashKey, hookimpl
from gateway.config import GatewayConfig
from gateway.plugin_manager import stand_down

CACHEABLE_OPS = frozenset({"chat", "completions", "embeddings"})
CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})
# Fields that change how an answer is delivered or attributed, not what it is.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    ttl_s: PositiveFloat = 300.0
    max_entries: PositiveInt = 10_000
    max_bytes: PositiveInt = Field(64 * 1024 * 1024)


class CacheBackend(Protocol):
    """Where answers are kept. A shared store (Redis: ``SET key value PX ttl`` with an LRU
    ``maxmemory-policy``) implements the same three calls."""

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent or expired."""

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store (or replace) a value for ``ttl_s`` seconds; a backend may drop it at any time."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""


@dataclass(slots=True)
class Entry:
    value: bytes
    expires_at: float
    size: int


class InProcessLRU:
    """An LRU in this process's memory, bounded by entry count and by bytes (key + value).

    ``clock`` is a monotonic time source (seconds); tests replace it to expire entries.
    """

    def __init__(self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self.clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        size = len(key) + len(value)
        if size > self.max_bytes:
            return  # would evict everything else and still not fit
        if key in self._entries:
            self._drop(key)
        self._entries[key] = Entry(value, self.clock() + ttl_s, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: str) -> None:
        self.bytes -= self._entries.pop(key).size


@dataclass(frozen=True, slots=True)
class CacheState:
    backend: CacheBackend
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Pending:
    """A request that missed (or bypassed) the cache: where to store its answer, if at all."""

    key: str
    store: bool


CACHE: web.AppKey[CacheState] = web.AppKey("llm_gateway.cache")
PENDING: StashKey[Pending] = StashKey("cache.pending")


def cache_control(ctx: RequestContext) -> set[str]:
    value = ctx.request.headers.get("Cache-Control", "")
    return {d.strip().lower() for d in value.split(",") if d.strip()}


def cache_key(ctx: RequestContext) -> str | None:
    assert ctx.op is not None
    target = ctx.targets[0]
    body = {k: v for k, v in ctx.body.items() if k not in IGNORED_FIELDS}
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a plugin put something non-JSON in the body: do not cache
        return None
    digest = hashlib.sha256(f"{ctx.op.name}\0{target.provider.name}\0{target.model}\0".encode())
    digest.update(canonical)
    return digest.hexdigest()


def cacheable(response: dict[str, Any]) -> bool:
    if "error" in response:
        return False
    choices = response.get("choices")
    if choices is None:  # embeddings
        return isinstance(response.get("data"), list)
    return bool(choices) and all(
        isinstance(c, dict) and c.get("finish_reason") in CACHEABLE_FINISH for c in choices
    )


def mark(ctx: RequestContext, outcome: str) -> None:
    ctx.cache = outcome
    ctx.response_headers["x-cache"] = "HIT" if outcome == "hit" else "MISS"


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"cache": CacheSettings}


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    settings: CacheSettings = config.section("cache") or CacheSettings()
    if not settings.enabled:
        stand_down(app, sys.modules[__name__])  # cache off: nothing on the request path
        return
    app[CACHE] = CacheState(InProcessLRU(settings.max_entries, settings.max_bytes), settings.ttl_s)


@hookimpl
async def gateway_before_upstream(ctx: RequestContext) -> ShortCircuit | None:
    state = ctx.request.app.get(CACHE)
    # A dialect's request is cached as the canonical one it became (keyed apart by its op name).
    if state is None or ctx.op is None or ctx.op.canonical.name not in CACHEABLE_OPS or not ctx.targets:
        return None
    key = cache_key(ctx)
    if key is None:
        return None
    directives = cache_control(ctx)
    ctx[PENDING] = Pending(key, store="no-store" not in directives)
    if "no-cache" in directives or "no-store" in directives:
        mark(ctx, "bypass")
        return None
    raw = await state.backend.get(key)
    if raw is None:
        mark(ctx, "miss")
        return None
    mark(ctx, "hit")
    entry = orjson.loads(raw)
    # The provider that produced the answer still "served" it (the contract's x-gateway-provider).
    return ShortCircuit(entry["response"], {"x-cache": "HIT", "x-gateway-provider": entry["provider"]})


@hookimpl(trylast=True)
async def gateway_response(ctx: RequestContext, response: dict[str, Any]) -> None:
    """Last in line, so what is stored is what the client gets after other plugins' edits."""
    pending = ctx.get(PENDING)
    if pending is None or not pending.store or ctx.stream or not cacheable(response):
        return
    state = ctx.request.app[CACHE]
    entry = {"provider": ctx.provider, "response": response}
    await state.backend.set(pending.key, orjson.dumps(entry), state.ttl_s)


@hookimpl
async def gateway_shutdown(app: web.Application) -> None:
    state = app.get(CACHE)
    if state is not None:
        await state.backend.close()
