"""``/admin/keys``, ``/admin/teams`` and ``/admin/spend``.

Reads come from memory (the key index and the budget ledger), except ``/admin/spend``, which
reads the daily rollups in the store (never raw records). Writes go to the store first, then into
this process's index at once; other processes see them on their next change poll. A store that
is down makes writes and spend reports 503; inference is not affected.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError, InvalidJSONError, InvalidRequestError, ServiceUnavailableError
from gateway.relay import error_response, json_response
from plugins.governance.admin_models import (
    KeyInput,
    KeyPatch,
    TeamInput,
    TeamPatch,
    day_param,
    key_json,
    parse,
    team_json,
    timestamp,
)
from plugins.governance.records import KeyRecord, TeamRecord, window
from plugins.governance.service import Governance
from plugins.governance.store import GROUP_COLUMNS, StoreError, replace
from plugins.governance.virtual_keys import KeyIndex, new_secret

Handler = Callable[[web.Request, Governance], Awaitable[web.Response]]


class NotFound(InvalidRequestError):
    status = 404
    code = "not_found"


def admin_route(current: Callable[[web.Request], Governance | None], handler: Handler
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Admin auth first, then the handler; errors in the OpenAI envelope, store failures 503.
    ``current`` gives the governance of the configuration now in force (routes are made once, at
    start-up; a reload may bring another store or admin keys, or switch the admin API off)."""

    async def route(request: web.Request) -> web.Response:
        gov = current(request)
        if gov is None or gov.admin is None:
            return error_response(InvalidRequestError(
                f"Unknown endpoint: {request.method} {request.path}", code="unknown_endpoint", status=404))
        try:
            gov.admin.verify(request)
            return await handler(request, gov)
        except StoreError:
            return error_response(ServiceUnavailableError(
                "The governance store is unavailable; try again shortly.", code="store_unavailable"))
        except GatewayError as exc:
            return error_response(exc)
    return route


async def body_of(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidJSONError("We could not parse the JSON body of your request.") from None


def spend_of(gov: Governance, scope: str, ident: str, period: str | None) -> float:
    return gov.local.spent((scope, ident, window(period, time.time())))


def render_key(gov: Governance, key: KeyRecord) -> dict[str, Any]:
    return key_json(key, spend_of(gov, "key", key.id, key.budget_period))


def render_team(gov: Governance, team: TeamRecord, keys: int) -> dict[str, Any]:
    return team_json(team, spend_of(gov, "team", team.id, team.budget_period), keys)


def find_key(gov: Governance, request: web.Request) -> KeyRecord:
    key = gov.index.keys.get(request.match_info["id"])
    if key is None:
        raise NotFound(f"No key with id '{request.match_info['id'][:64]}'.", param="id")
    return key


def find_team(gov: Governance, request: web.Request) -> TeamRecord:
    team = gov.index.live_team(request.match_info["id"])
    if team is None:
        raise NotFound(f"No team with id '{request.match_info['id'][:64]}'.", param="id")
    return team


def key_fields(index: KeyIndex, data: KeyInput, fields: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(data, name)
        if name == "team":
            if value is not None and index.live_team(value) is None:
                raise InvalidRequestError(f"team: no team with id '{str(value)[:64]}'", param="team")
            out["team_id"] = value
        elif name == "rate_limit":
            out[name] = value.model_dump(exclude_none=True) if value is not None else None
        elif name == "expires_at":
            out[name] = timestamp(value)
        elif name == "models":
            out[name] = tuple(value)
        else:
            out[name] = value
    return out


def new_key(index: KeyIndex, data: KeyInput) -> tuple[KeyRecord, str]:
    """A new key's record and its secret (for the caller to show once, then forget)."""
    secret, digest, hint = new_secret()
    now = time.time()
    record = KeyRecord(id="key_" + secrets.token_hex(8), digest=digest, hint=hint, name=data.name,
                       created_at=now, updated_at=now, **key_fields(index, data, data.model_fields_set - {"name"}))
    return record, secret


async def create_key(request: web.Request, gov: Governance) -> web.Response:
    record, secret = new_key(gov.index, parse(KeyInput, await body_of(request)))
    saved = await gov.store.save_key(record)
    gov.index.apply([saved], [])
    return json_response({**render_key(gov, saved), "key": secret}, status=201)


async def list_keys(request: web.Request, gov: Governance) -> web.Response:
    keys = sorted(gov.index.keys.values(), key=lambda k: k.created_at)
    return json_response({"object": "list", "data": [render_key(gov, k) for k in keys]})


async def get_key(request: web.Request, gov: Governance) -> web.Response:
    return json_response(render_key(gov, find_key(gov, request)))


async def patch_key(request: web.Request, gov: Governance) -> web.Response:
    key = find_key(gov, request)
    data = parse(KeyPatch, await body_of(request))
    saved = await gov.store.save_key(replace(key, updated_at=time.time(),
                                             **key_fields(gov.index, data, data.model_fields_set)))
    gov.index.apply([saved], [])
    return json_response(render_key(gov, saved))


async def revoke_key(request: web.Request, gov: Governance) -> web.Response:
    key = find_key(gov, request)
    now = time.time()
    saved = await gov.store.save_key(replace(key, revoked_at=key.revoked_at or now, updated_at=now))
    gov.index.apply([saved], [])
    return json_response(render_key(gov, saved))


async def create_team(request: web.Request, gov: Governance) -> web.Response:
    data = parse(TeamInput, await body_of(request))
    now = time.time()
    saved = await gov.store.save_team(TeamRecord(id="team_" + secrets.token_hex(8), created_at=now, updated_at=now,
                                                 **data.model_dump()))
    gov.index.apply([], [saved])
    return json_response(render_team(gov, saved, 0), status=201)


def key_counts(gov: Governance) -> Tally[str | None]:
    return Tally(k.team_id for k in gov.index.keys.values() if k.revoked_at is None)


async def list_teams(request: web.Request, gov: Governance) -> web.Response:
    counts = key_counts(gov)
    teams = sorted((t for t in gov.index.teams.values() if t.deleted_at is None), key=lambda t: t.created_at)
    return json_response({"object": "list", "data": [render_team(gov, t, counts[t.id]) for t in teams]})


async def get_team(request: web.Request, gov: Governance) -> web.Response:
    team = find_team(gov, request)
    return json_response(render_team(gov, team, key_counts(gov)[team.id]))


async def patch_team(request: web.Request, gov: Governance) -> web.Response:
    team = find_team(gov, request)
    data = parse(TeamPatch, await body_of(request))
    saved = await gov.store.save_team(replace(team, updated_at=time.time(),
                                              **{f: getattr(data, f) for f in data.model_fields_set}))
    gov.index.apply([], [saved])
    return json_response(render_team(gov, saved, key_counts(gov)[saved.id]))


async def delete_team(request: web.Request, gov: Governance) -> web.Response:
    """The team goes, and its keys stop working with it (they are not left valid)."""
    team = find_team(gov, request)
    now = time.time()
    saved = await gov.store.save_team(replace(team, deleted_at=now, updated_at=now))
    gov.index.apply([], [saved])
    return json_response({**render_team(gov, saved, key_counts(gov)[saved.id]), "deleted": True})


async def spend(request: web.Request, gov: Governance) -> web.Response:
    query = request.query
    group_by = query.get("group_by", "key")
    if group_by not in GROUP_COLUMNS:
        raise InvalidRequestError(f"group_by: must be one of {', '.join(GROUP_COLUMNS)}", param="group_by")
    day_from = day_param(query.get("from"), "from", "0001-01-01")
    day_to = day_param(query.get("to"), "to", "9999-12-31")
    return json_response({"object": "list", "group_by": group_by, "from": query.get("from"), "to": query.get("to"),
                          "data": await gov.store.spend(group_by, day_from, day_to)})


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/admin/keys", create_key), ("GET", "/admin/keys", list_keys),
    ("GET", "/admin/keys/{id}", get_key), ("PATCH", "/admin/keys/{id}", patch_key),
    ("DELETE", "/admin/keys/{id}", revoke_key),
    ("POST", "/admin/teams", create_team), ("GET", "/admin/teams", list_teams),
    ("GET", "/admin/teams/{id}", get_team), ("PATCH", "/admin/teams/{id}", patch_team),
    ("DELETE", "/admin/teams/{id}", delete_team),
    ("GET", "/admin/spend", spend),
)


def add_routes(app: web.Application, current: Callable[[web.Request], Governance | None]) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, admin_route(current, handler))
