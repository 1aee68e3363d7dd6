"""Virtual keys in memory: the digest of every usable key maps to its record.

Requests are authenticated here and nowhere else: sha256 of the presented key, one dict look-up
(about a microsecond at any number of keys), no store access. A key that cannot expire and whose
team is live maps straight to its principal (``KeyIndex.ready``, remade on every change of the
key or its team), so its requests need no other check. The index is kept current by the
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
        # digest -> principal of every usable key without an expiry whose team (if any) is live:
        # all a request needs. Keys that can expire are checked against the clock (``match``).
        self.ready: dict[bytes, Principal] = {}
        self.seq = 0  # the highest change number applied
        self.generation = 0  # counts the applies that changed a key or a team (what was derived from them is stale)
        self.loaded = False  # the first full read from the store has happened

    def apply(self, keys: Iterable[KeyRecord], teams: Iterable[TeamRecord]) -> None:
        generation = self.generation
        changed_teams = set()
        for team in teams:
            self.generation = generation + 1
            self.teams[team.id] = team
            changed_teams.add(team.id)
            self.seq = max(self.seq, team.seq)
        for key in keys:
            self.generation = generation + 1
            old = self.keys.get(key.id)
            if old is not None:
                self.by_digest.pop(bytes.fromhex(old.digest), None)
                self.ready.pop(bytes.fromhex(old.digest), None)
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
            self._make_ready(key)
            self.seq = max(self.seq, key.seq)
        if changed_teams:  # rare (admin writes): a team's keys follow its deletion or return
            for key in self.keys.values():
                if key.team_id in changed_teams:
                    self._make_ready(key)

    def _make_ready(self, key: KeyRecord) -> None:
        digest = bytes.fromhex(key.digest)
        principal = self.principals.get(key.id) if key.revoked_at is None else None
        if principal is not None and key.expires_at is None and (key.team_id is None or self.live_team(key.team_id)):
            self.ready[digest] = principal
        else:
            self.ready.pop(digest, None)

    def live_team(self, team_id: str | None) -> TeamRecord | None:
        team = self.teams.get(team_id) if team_id else None
        return team if team is not None and team.deleted_at is None else None

    def match(self, presented: str) -> KeyRecord | None:
        """The usable key for ``presented``; None when unknown, revoked, expired or its team gone."""
        return self.match_digest(hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest())

    def match_digest(self, digest: bytes) -> KeyRecord | None:
        key = self.by_digest.get(digest)
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
            # One hash of the presented key, one look-up for the usual key (no expiry, live team).
            digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
            principal = self.index.ready.get(digest)
            if principal is not None:
                return principal
            key = self.index.match_digest(digest)
            if key is not None:
                return self.index.principals[key.id]
        if self.static_keys:
            return None  # the static-key plugin decides (and the core refuses a missing key)
        if presented is None:
            raise AuthenticationError("Missing API key: send it in the Authorization header as a Bearer token.",
                                      code="missing_api_key")
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
