"""The ``cache:`` section of the configuration (``plugins.cache`` says what each setting does)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator

from gateway.config import check_redis_url


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    backend: Literal["memory", "redis"] = "memory"
    # A separate Redis for answers (its own maxmemory and eviction); default: the redis section's.
    redis_url: str | None = None
    # shared: one answer for every key allowed to use the model; key: each client key its own.
    scope: Literal["shared", "key"] = "shared"
    ttl_s: PositiveFloat = 300.0
    max_entries: PositiveInt = 10_000  # memory backend only: Redis evicts by its maxmemory-policy
    max_bytes: PositiveInt = Field(64 * 1024 * 1024)
    # One answer larger than this (serialised, before compression) is not stored.
    max_entry_bytes: PositiveInt | None = None
    # redis backend: a request that misses while another process fetches the same answer waits
    # up to this long for it (a lock in Redis) instead of calling upstream too. 0: no lock.
    lock_wait_s: NonNegativeFloat = 0.0

    @field_validator("redis_url")
    @classmethod
    def _parses(cls, v: str | None) -> str | None:
        return None if v is None else check_redis_url(v)
