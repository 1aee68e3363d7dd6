"""What the admin API accepts and what it answers: request bodies validated (a 400 names the
field), records rendered as JSON (never a key's secret or digest)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, ValidationError

from gateway.config import RateLimitSpec, loc_to_path
from gateway.errors import InvalidRequestError
from plugins.governance.records import KeyRecord, TeamRecord

Period = Literal["day", "week", "month"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyInput(Input):
    name: str = Field(min_length=1, max_length=200)
    models: list[str] = Field(default_factory=list)
    rate_limit: RateLimitSpec | None = None
    budget_usd: NonNegativeFloat | None = None
    budget_period: Period | None = None
    team: str | None = None
    expires_at: dt.datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class KeyPatch(KeyInput):
    name: str = Field("", min_length=1, max_length=200)


class TeamInput(Input):
    name: str = Field(min_length=1, max_length=200)
    budget_usd: NonNegativeFloat | None = None
    budget_period: Period | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TeamPatch(TeamInput):
    name: str = Field("", min_length=1, max_length=200)


def parse(model: type[Input], body: Any) -> Input:
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = loc_to_path(loc) or "body"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise InvalidRequestError(f"{path}: {msg}", param=path) from None


def timestamp(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()


def iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def key_json(key: KeyRecord, spend_usd: float) -> dict[str, Any]:
    return {
        "id": key.id, "object": "key", "name": key.name, "key_hint": key.hint, "team": key.team_id,
        "models": list(key.models), "rate_limit": key.rate_limit, "budget_usd": key.budget_usd,
        "budget_period": key.budget_period, "spend_usd": round(spend_usd, 9), "expires_at": iso(key.expires_at),
        "metadata": key.metadata, "created_at": iso(key.created_at), "updated_at": iso(key.updated_at),
        "revoked": key.revoked_at is not None, "revoked_at": iso(key.revoked_at),
    }


def team_json(team: TeamRecord, spend_usd: float, keys: int) -> dict[str, Any]:
    return {
        "id": team.id, "object": "team", "name": team.name, "budget_usd": team.budget_usd,
        "budget_period": team.budget_period, "spend_usd": round(spend_usd, 9), "keys": keys,
        "metadata": team.metadata, "created_at": iso(team.created_at), "updated_at": iso(team.updated_at),
    }


def day_param(value: str | None, name: str, default: str) -> str:
    """A ``from``/``to`` query value: a date or an ISO date-time (its UTC date counts)."""
    if not value:
        return default
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value).isoformat()
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"{name}: must be a date (YYYY-MM-DD) or an ISO 8601 date-time",
                                  param=name) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date().isoformat()
