"""The key index's straight map from digest to principal: only for keys that need no other check,
and kept in step with every change of a key or its team."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from types import SimpleNamespace

from gateway import Principal, RequestContext
from plugins.governance.accounting import Accounting
from plugins.governance.budgets import LocalLedger
from plugins.governance.records import KeyRecord, TeamRecord
from plugins.governance.virtual_keys import KeyAuthenticator, KeyIndex

SECRET = "sk-gw-index-test"
DIGEST = hashlib.sha256(SECRET.encode()).digest()
TEAM = TeamRecord(id="team_a", name="a")
KEY = KeyRecord(id="key_a", digest=DIGEST.hex(), hint="sk-gw-...", name="a", team_id="team_a")


def authenticate(index: KeyIndex) -> Principal | None:
    ctx = RequestContext(SimpleNamespace(headers={"Authorization": f"Bearer {SECRET}"}), None, "r")  # type: ignore[arg-type]
    return KeyAuthenticator(index, static_keys=True).gateway_authenticate(ctx)


def test_a_key_with_a_live_team_maps_straight_to_its_principal_until_the_team_goes() -> None:
    index = KeyIndex()
    index.apply([KEY], [TEAM])
    assert index.ready[DIGEST] is index.principals[KEY.id] is authenticate(index)
    index.apply([], [dataclasses.replace(TEAM, deleted_at=time.time())])
    assert DIGEST not in index.ready and authenticate(index) is None
    index.apply([], [TEAM])  # the team back: its keys with it
    assert authenticate(index) is index.principals[KEY.id] is index.ready[DIGEST]


def test_a_key_that_can_expire_is_checked_against_the_clock() -> None:
    index = KeyIndex()
    index.apply([dataclasses.replace(KEY, expires_at=time.time() + 60)], [TEAM])
    assert DIGEST not in index.ready and authenticate(index) is index.principals[KEY.id]
    index.apply([dataclasses.replace(KEY, expires_at=time.time() - 1)], [])
    assert authenticate(index) is None


def test_a_revoked_key_or_one_whose_team_never_existed_is_refused() -> None:
    index = KeyIndex()
    index.apply([dataclasses.replace(KEY, team_id="team_missing")], [TEAM])
    assert authenticate(index) is None
    index.apply([KEY], [])
    assert authenticate(index) is not None
    index.apply([dataclasses.replace(KEY, revoked_at=time.time())], [])
    assert DIGEST not in index.ready and authenticate(index) is None


def test_a_static_principal_named_like_a_key_gets_no_plan() -> None:
    index = KeyIndex()
    index.apply([dataclasses.replace(KEY, budget_usd=1.0, budget_period="day")], [TEAM])
    accounting = Accounting(SimpleNamespace(index=index, local=LocalLedger(), remote=None), check_models=False)  # type: ignore[arg-type]
    ctx = RequestContext(None, None, "r")  # type: ignore[arg-type]
    ctx.principal = index.principals[KEY.id]
    assert accounting.plan_of(ctx, time.time()) is not None
    ctx.principal = Principal(KEY.id)  # a static key whose name is a key's id
    assert accounting.gateway_request_received(ctx) is None and not ctx.stash
