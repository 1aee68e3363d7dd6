"""The ``admin``, ``store`` and ``pricing`` sections of gateway.yaml.

Any of the three switches governance on: ``pricing`` (or ``store``) alone prices every request and
records its spend; ``admin`` also opens the admin API and turns client authentication on, for
virtual keys and the static ``auth.keys`` alike.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    RootModel,
    SecretStr,
    field_validator,
)

DEFAULT_STORE_URL = "sqlite:///./data/gateway.db"
HASHED = re.compile(r"sha256:[0-9a-fA-F]{64}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdminConfig(Strict):
    keys: list[SecretStr] = Field(min_length=1)
    # A request without max_tokens reserves this many output tokens against its budgets.
    reserve_max_tokens: PositiveInt = 4096

    @field_validator("keys")
    @classmethod
    def _well_formed(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            raw = key.get_secret_value()
            if not raw:
                raise ValueError("an admin key is empty (is its environment variable set?)")
            if raw.startswith("sha256:") and not HASHED.fullmatch(raw):
                raise ValueError("a hashed key must be 'sha256:' followed by 64 hex digits")
        return keys


class StoreConfig(Strict):
    url: SecretStr = SecretStr(DEFAULT_STORE_URL)  # a Postgres URL may hold a password
    retention_days: PositiveInt = 30
    # Spend events waiting for the writer; beyond this they are counted as dropped.
    queue_max: PositiveInt = 100_000
    flush_interval_s: PositiveFloat = Field(1.0, le=1.0)
    # How often each process asks the store whether keys or teams changed.
    poll_interval_s: PositiveFloat = Field(0.5, le=1.0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: SecretStr) -> SecretStr:
        parts = urlsplit(url.get_secret_value())
        if parts.scheme == "sqlite":
            if not parts.path.lstrip("/"):
                raise ValueError("a sqlite URL needs a file path, e.g. sqlite:///./data/gateway.db")
        elif parts.scheme in ("postgres", "postgresql"):
            if not parts.hostname and "host=" not in parts.query:
                raise ValueError("a postgresql URL needs a host")
        else:  # never echo the URL: it may hold a password
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return url


class Price(Strict):
    """USD per million tokens, and an optional fee per request."""

    input: NonNegativeFloat
    output: NonNegativeFloat = 0.0
    cached_input: NonNegativeFloat | None = None
    per_request: NonNegativeFloat = 0.0


class PricingConfig(RootModel[dict[str, Price]]):
    """``"provider/model": {input, output, cached_input?, per_request?}``."""

    model_config = ConfigDict(frozen=True)

    @field_validator("root")
    @classmethod
    def _names(cls, root: dict[str, Price]) -> dict[str, Price]:
        for name in root:
            if "/" not in name:
                raise ValueError(f"{name!r} must be 'provider/model'")
        return root
