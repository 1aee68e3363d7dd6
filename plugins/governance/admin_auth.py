"""Admin authentication, for every admin surface (the ``/admin`` API, the dashboard's data).

Admin keys come from ``admin.keys``, plain or ``"sha256:<hex>"``; only their digests are kept.
A presented key is hashed and looked up in a set: the time taken says nothing about which stored
digest is near it. Client keys never reach ``/admin``, and admin keys are not client keys.
"""

from __future__ import annotations

import hashlib

from aiohttp import web
from pydantic import SecretStr

from gateway.errors import AuthenticationError

HASHED_PREFIX = "sha256:"


def digest_of(secret: str) -> bytes:
    # surrogateescape: a header with undecodable bytes is a wrong key, not a crash.
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def bearer(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (or ``x-api-key``); None without one."""
    authorization = request.headers.get("Authorization")
    if authorization and authorization.startswith("Bearer "):  # the usual form, without the split
        value = authorization[7:].strip()
        if value:
            return value
    elif authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


class AdminAuth:
    def __init__(self, keys: list[SecretStr]) -> None:
        self._digests = frozenset(
            bytes.fromhex(raw[len(HASHED_PREFIX):]) if raw.startswith(HASHED_PREFIX) else digest_of(raw)
            for raw in (k.get_secret_value() for k in keys)
        )

    def verify(self, request: web.Request) -> None:
        """Raise ``AuthenticationError`` (401) unless the request carries an admin key."""
        presented = bearer(request)
        if presented is None:
            raise AuthenticationError("Missing admin key: send it as 'Authorization: Bearer <admin key>'.",
                                      code="missing_api_key")
        if digest_of(presented) not in self._digests:
            raise AuthenticationError("Incorrect admin key provided.", code="invalid_api_key")


ADMIN: web.AppKey[AdminAuth] = web.AppKey("llm_gateway.admin")
