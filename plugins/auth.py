"""Client keys: who is calling, and which models that key may use.

Keys come from the core ``auth.keys`` section, either plain (usually ``"${VAR}"``) or as
``"sha256:<hex>"`` so the config never holds the key. Either way only the SHA-256 digest is kept
in memory. A presented key is hashed once and looked up in a dict of digests: the same work at one
key or 10,000 (see ``AuthState.match`` for why that lookup tells a timing attacker nothing).
Auth is off when ``auth.keys`` is empty.

Accepted as ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` on every route. A presented
but unknown key is a 401 here; no key at all returns None, and the core answers 401 when keys are
configured (another plugin may still recognise the request).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from aiohttp import web

from gateway import AuthenticationError, PermissionDeniedError, Principal, RequestContext, hookimpl
from gateway.config import AuthKeyConfig, GatewayConfig
from gateway.plugin_manager import stand_down

HASHED_PREFIX = "sha256:"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    name: str
    digest: bytes  # sha256 of the key; the key itself is never kept
    models: tuple[str, ...]
    # The principal every request with this key gets: made once, read-only for every plugin
    # (``Principal`` is documented as read-only), not a new object and dict per request.
    principal: Principal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "principal", Principal(self.name, self.models))


@dataclass(frozen=True, slots=True)
class AuthState:
    keys: tuple[KeyEntry, ...]
    by_digest: dict[bytes, KeyEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table: dict[bytes, KeyEntry] = {}
        for entry in self.keys:
            table.setdefault(entry.digest, entry)  # the first of two equal keys wins, as in file order
        object.__setattr__(self, "by_digest", table)

    def match(self, presented: str) -> KeyEntry | None:
        """One sha256 and one dict lookup, whatever the number of keys.

        Why a lookup leaks nothing useful: the table is keyed by the sha256 of the key, never the
        key, so what timing could reveal is at most something about the *digest* of a presented
        key, a value the caller already knows (they hashed it too). To move towards a valid
        digest an attacker would have to choose inputs whose sha256 shares a growing prefix with
        it, which is a preimage search sha256 rules out; and even the full digest does not give
        the key back. The lookup itself hashes the digest with Python's per-process keyed SipHash
        and compares bytes only on a full hash match, so neither the bucket probed nor an early
        ``memcmp`` exit follows the stored digests in a way a remote caller can steer.
        """
        # surrogateescape: a header with undecodable bytes is a wrong key, not a crash.
        return self.by_digest.get(hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest())


AUTH: web.AppKey[AuthState] = web.AppKey("llm_gateway.auth")


def key_digest(key: AuthKeyConfig) -> bytes:
    raw = key.key.get_secret_value()
    if raw.startswith(HASHED_PREFIX):
        return bytes.fromhex(raw[len(HASHED_PREFIX):])
    return hashlib.sha256(raw.encode()).digest()


def presented_key(ctx: RequestContext) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key``; None when neither is there.
    Another ``Authorization`` scheme is not ours to judge (a third-party plugin may own it)."""
    headers = ctx.request.headers
    authorization = headers.get("Authorization")
    if authorization:
        if authorization.startswith("Bearer "):  # as nearly every client sends it
            value = authorization[7:].strip()
            if value:
                return value
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None


def allowed(patterns: tuple[str, ...], names: list[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    if not config.auth.keys:
        stand_down(app, sys.modules[__name__])  # auth off: nothing on the request path
        return
    app[AUTH] = AuthState(tuple(
        KeyEntry(k.name, key_digest(k), tuple(k.models)) for k in config.auth.keys
    ))


@hookimpl
def gateway_authenticate(ctx: RequestContext) -> Principal | None:
    state = ctx.app[AUTH]
    if not state.keys:
        return None
    presented = presented_key(ctx)
    if presented is None:
        return None
    entry = state.match(presented)
    if entry is None:
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    return entry.principal


@hookimpl(tryfirst=True)
def gateway_request_received(ctx: RequestContext) -> None:
    """Model permissions, before any other plugin spends work (or rate budget) on the request.

    A key's ``models`` patterns are matched against the requested name (a model, ``provider/model``
    or an alias) and against each resolved ``provider/model``. If the requested name matches, every
    target is allowed; otherwise only the matching targets are kept (so an alias cannot fall back
    to a provider the key may not use), and none left means 403.
    """
    principal = ctx.principal
    if principal is None or not principal.models:
        return
    if ctx.model is not None and allowed(principal.models, [ctx.model]):
        return
    permitted = tuple(t for t in ctx.targets if allowed(principal.models, [t.label]))
    if not permitted:
        raise PermissionDeniedError(
            f"The API key '{principal.name}' is not allowed to use the model '{ctx.model}'.", param="model"
        )
    ctx.targets = permitted
