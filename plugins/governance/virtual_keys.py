"""Virtual keys in memory: the digest of every usable key maps to its record.

Requests are authenticated here and nowhere else: sha256 of the presented key, one dict look-up
(about a microsecond at any number of keys), no store access. The index is kept current by the
admin API (its own writes, at once) and by the change poll (every other process's writes, within
``store.poll_interval_s``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable

from gateway import AuthenticationError, Principal, RequestContext, hookimpl
from gateway.config import RateLimitSpec
from plugins.governance.admin_auth import bearer
from plugins.governance.records import KeyRecord, TeamRecord

KEY_PREFIX = "sk-gw-"


def new_secret() -> tuple[str, str, str]:
    """A fresh key: (secret, hex digest, hint). The secret is returned to the caller once."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, hashlib.sha256(secret.encode()).hexdigest(), f"{KEY_PREFIX}...{secret[-4:]}"


class KeyIndex:
    def __init__(self) -> None:
        self.by_digest: dict[bytes, KeyRecord] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.teams: dict[str, TeamRecord] = {}
        # Each key's rate limit, validated once per change: the principal carries this object, and
        # the rate-limit plugin caches its buckets per (key id, this object).
        self.rate_limits: dict[str, RateLimitSpec] = {}
        # Each usable key's principal, made once per change and handed to every request of the key
        # (nothing changes a principal after authentication; the rate-limit plugin relies on
        # seeing the same spec object).
        self.principals: dict[str, Principal] = {}
        self.seq = 0  # the highest change number applied
        self.generation = 0  # counts the applies that changed a key or a team (what was derived from them is stale)
        self.loaded = False  # the first full read from the store has happened

    def apply(self, keys: Iterable[KeyRecord], teams: Iterable[TeamRecord]) -> None:
        generation = self.generation
        for team in teams:
            self.generation = generation + 1
            self.teams[team.id] = team
            self.seq = max(self.seq, team.seq)
        for key in keys:
            self.generation = generation + 1
            old = self.keys.get(key.id)
            if old is not None:
                self.by_digest.pop(bytes.fromhex(old.digest), None)
            self.keys[key.id] = key
            if key.rate_limit and key.revoked_at is None:
                self.rate_limits[key.id] = RateLimitSpec.model_validate(key.rate_limit)
            else:
                self.rate_limits.pop(key.id, None)
            if key.revoked_at is None:
                self.by_digest[bytes.fromhex(key.digest)] = key
                self.principals[key.id] = principal_for(key, self.rate_limits.get(key.id))
            else:
                self.principals.pop(key.id, None)
            self.seq = max(self.seq, key.seq)

    def live_team(self, team_id: str | None) -> TeamRecord | None:
        team = self.teams.get(team_id) if team_id else None
        return team if team is not None and team.deleted_at is None else None

    def match(self, presented: str) -> KeyRecord | None:
        """The usable key for ``presented``; None when unknown, revoked, expired or its team gone."""
        key = self.by_digest.get(hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest())
        if key is None:
            return None
        if key.expires_at is not None and not key.usable(time.time()):  # revoked keys are not in by_digest
            return None
        if key.team_id is not None and self.live_team(key.team_id) is None:
            return None
        return key


def principal_for(key: KeyRecord, rate_limit: RateLimitSpec | None = None) -> Principal:
    # The key's id as the name: unique, and never confused with a static key's name. The rate
    # limit (a RateLimitSpec) is what the rate-limit plugin enforces for a run-time key.
    return Principal(key.id, key.models, {"key_id": key.id, "key_name": key.name, "team_id": key.team_id,
                                          "rate_limit": rate_limit})


class KeyAuthenticator:
    """``gateway_authenticate`` for virtual keys, registered when ``admin`` is configured.

    It runs before the static-key plugin. A virtual key gives its principal; anything else is
    left to the static keys when gateway.yaml has some, and refused otherwise: with an admin
    section client auth is on even before the first key exists.
    """

    def __init__(self, index: KeyIndex, static_keys: bool) -> None:
        self.index = index
        self.static_keys = static_keys

    @hookimpl
    def gateway_authenticate(self, ctx: RequestContext) -> Principal | None:
        presented = bearer(ctx.request)
        if presented is not None:
            key = self.index.match(presented)
            if key is not None:
                return self.index.principals[key.id]
        if self.static_keys:
            return None  # the static-key plugin decides (and the core refuses a missing key)
        if presented is None:
            raise AuthenticationError("Missing API key: send it in the Authorization header as a Bearer token.",
                                      code="missing_api_key")
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
