"""Per-request state shared by the core and the plugins."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.operations import Operation
    from gateway.routing import Target

T = TypeVar("T")


class StashKey(Generic[T]):
    """A typed key for ``RequestContext.stash``; each plugin owns its keys (module-level constants)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


@dataclass(slots=True)
class Principal:
    """The authenticated caller: a key's *name*, never the key itself. Read-only once returned by
    ``gateway_authenticate``: an authenticator may hand every request of a key the same object."""

    name: str
    # fnmatch patterns over "provider/model" and alias names; empty means all.
    models: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        if not usage:
            return None
        details = usage.get("prompt_tokens_details") or {}
        try:
            return cls(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
            )
        except (TypeError, ValueError, AttributeError):
            return None  # a vendor's malformed usage is unknown usage, not a failed request

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Outcome:
    """How a request ended; passed to ``gateway_request_finished``."""

    status: int
    error_type: str | None = None
    error_code: str | None = None
    provider: str | None = None
    model: str | None = None
    usage: Usage | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    stream: bool = False
    cache: str | None = None
    attempts: int = 0
    # USD, set by a pricing plugin (governance) before the other finish hooks read it; None: unpriced.
    cost_usd: float | None = None


class RequestContext:
    """State of one request. Plugins keep their own state in ``stash`` under a ``StashKey``."""

    __slots__ = (
        "app",
        "attempts",
        "body",
        "cache",
        "first_chunk_at",
        "model",
        "op",
        "pending_end",
        "principal",
        "provider",
        "request",
        "request_id",
        "response_bytes",
        "response_headers",
        "started",
        "stash",
        "stream",
        "target",
        "targets",
        "usage",
    )

    def __init__(
        self, request: web.Request, op: Operation | None, request_id: str, app: web.Application | None = None
    ) -> None:
        self.request = request
        # Plugin state of the configuration generation this request runs on (``app[KEY]`` as
        # set in ``gateway_configure``); after a reload it is not ``request.app``.
        self.app = app if app is not None else getattr(request, "app", None)
        self.op = op
        self.request_id = request_id
        self.started = time.perf_counter()
        self.principal: Principal | None = None
        self.body: dict[str, Any] = {}
        self.model: str | None = None  # as the client asked
        self.stream = False
        self.targets: tuple[Target, ...] = ()
        self.target: Target | None = None  # the target being tried / that served
        self.provider: str | None = None
        self.usage: Usage | None = None
        self.first_chunk_at: float | None = None
        self.cache: str | None = None
        self.attempts = 0
        self.response_headers: dict[str, str] = {}
        # A non-stream upstream body that already is the OpenAI answer, byte for byte (the
        # adapter returned what it parsed unchanged): sent as is unless a plugin saw the answer.
        self.response_bytes: bytes | None = None
        self.stash: dict[StashKey[Any], Any] = {}
        # The serving attempt's bookkeeping (circuit breaker, health, attempt-done hooks), left
        # for after the client got its first bytes: see ``settle_attempt``.
        self.pending_end: Callable[[], None] | None = None

    def settle_attempt(self) -> None:
        """End the attempt that served this request, once. The handler calls it as soon as the
        client has its first bytes, and before any plugin code that may read the attempt's
        outcome (response hooks, stream wrappers, error hooks, request-finished hooks). With a
        20 ms pause between requests (caches gone cold), the end's work (breaker, health, the
        metrics hook) was 40-50 µs of the gateway's time to first chunk."""
        end, self.pending_end = self.pending_end, None
        if end is not None:
            end()

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:
        return self.stash.get(key, default)

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self.stash[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return self.stash[key]
