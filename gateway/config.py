"""``gateway.yaml`` as pydantic v2 models, ``${VAR}`` interpolation and field-path error messages.

Core keys are modelled here; a top-level section owned by a plugin (``rate_limit``, ``cache``,
``telemetry``, a third party's own) is validated by the model that plugin declares through the
``gateway_config_sections`` hook (see ``gateway.loader``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, SecretStr, field_validator

from gateway.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: PositiveInt = 1
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    max_header_bytes: PositiveInt = 16 * 1024
    drain_timeout_s: float = Field(30.0, ge=0)
    access_log: bool = False
    models_cache_ttl_s: float = Field(60.0, ge=0)
    # Kernel-level bound on how long data written to a stalled client may stay unacknowledged.
    client_send_timeout_s: PositiveFloat = 120.0
    sse_ping_interval_s: PositiveFloat = 15.0
    # Where `serve` writes its PID (the --workers parent's), for `llm-gateway reload`; none by default.
    pid_file: str | None = None


class RateLimitSpec(Strict):
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None


class PoolConfig(Strict):
    max_connections: PositiveInt = 256
    max_connections_per_host: int = Field(0, ge=0)  # 0 = no per-host limit beyond max_connections
    keepalive_s: PositiveFloat = 30.0
    dns_cache_s: PositiveFloat = 300.0
    # Concurrent upstream requests admitted for this provider; the rest get 503 at once.
    max_concurrent_requests: PositiveInt | None = None


class TimeoutConfig(Strict):
    connect_s: PositiveFloat = 10.0
    first_byte_s: PositiveFloat = 60.0
    idle_s: PositiveFloat = 60.0
    total_s: PositiveFloat = 600.0


class RetryConfig(Strict):
    attempts: int = Field(2, ge=0, le=10)  # extra attempts after the first
    backoff_base_s: float = Field(0.2, ge=0)
    backoff_max_s: float = Field(5.0, ge=0)
    deadline_s: PositiveFloat = 30.0  # no new attempt starts after this much time
    max_retry_after_s: float = Field(10.0, ge=0)  # a longer upstream Retry-After is not waited for


class CircuitBreakerConfig(Strict):
    enabled: bool = True
    consecutive_failures: PositiveInt = 5
    error_rate: float = Field(0.5, gt=0, le=1)
    min_requests: PositiveInt = 20
    window_s: PositiveFloat = 30.0
    open_s: PositiveFloat = 15.0


class HealthCheckConfig(Strict):
    enabled: bool = True
    interval_s: PositiveFloat = 30.0
    timeout_s: PositiveFloat = 5.0


def _empty_is_false(value: Any) -> Any:
    # "${OPENAI_API_KEY:+true}" interpolates to "" when the variable is unset.
    return False if value == "" or value is None else value


class ProviderConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    type: str
    enabled: bool = True
    base_url: str | None = None
    api_key: SecretStr | None = None
    models: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    rate_limit: RateLimitSpec | None = None
    pool: PoolConfig = PoolConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    retry: RetryConfig = RetryConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    health_check: HealthCheckConfig = HealthCheckConfig()
    # Inbound dialects this deployment serves itself (relayed, not translated); None: the
    # adapter's default (e.g. a self-hosted OpenAI-compatible server without /responses: []).
    native_dialects: list[str] | None = None

    _check_enabled = field_validator("enabled", mode="before")(_empty_is_false)

    @property
    def key(self) -> str:
        return self.api_key.get_secret_value() if self.api_key else ""


class AuthKeyConfig(Strict):
    name: str
    key: SecretStr
    models: list[str] = Field(default_factory=list)
    rate_limit: RateLimitSpec | None = None

    @field_validator("key")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if not raw:
            raise ValueError("key is empty (is its environment variable set?)")
        if raw.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", raw):
            raise ValueError("a hashed key must be 'sha256:' followed by 64 hex digits")
        return v


class AuthConfig(Strict):
    keys: list[AuthKeyConfig] = Field(default_factory=list)


class ModelAlias(Strict):
    name: str
    targets: list[str] = Field(min_length=1)


class RedisConfig(Strict):
    """The shared store for state that must hold across workers and replicas (rate limits, the
    response cache, ...). One connection pool per process, opened in that process after start-up."""

    url: str = "redis://127.0.0.1:6379/0"
    # Per command on the request path: a Redis that does not answer within this is a store error.
    timeout_s: PositiveFloat = 0.05
    # Connections per process and URL; a burst larger than the pool waits for one (bounded by
    # pool_wait_s), which is back-pressure, not a store error.
    max_connections: PositiveInt = 32
    pool_wait_s: PositiveFloat = 0.1
    connect_timeout_s: PositiveFloat = 0.25

    @field_validator("url")
    @classmethod
    def _parses(cls, v: str) -> str:
        return check_redis_url(v)


def check_redis_url(url: str) -> str:
    """A URL redis-py can open: ``redis://``, ``rediss://`` or ``unix://`` with a host or path and
    an optional numeric database. Raised messages never repeat the URL (it may hold a password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs a socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("needs a host")
    db = parts.path.lstrip("/") if parts.scheme != "unix" else ""
    if db and not db.isdigit():
        raise ValueError("the path must be a database number, e.g. /0")
    return url


class PluginsConfig(Strict):
    disabled: list[str] = Field(default_factory=list)


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    providers: list[ProviderConfig] = Field(min_length=1)
    models: list[ModelAlias] = Field(default_factory=list)
    plugins: PluginsConfig = PluginsConfig()
    redis: RedisConfig | None = None
    # Validated plugin-owned sections, filled by the loader; not part of the YAML schema itself.
    sections: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def section(self, name: str) -> Any:
        return self.sections.get(name)

    @property
    def secrets(self) -> list[str]:
        """Every secret literal in the config, for redaction."""
        found = [p.key for p in self.providers if p.key]
        found += [k.key.get_secret_value() for k in self.auth.keys]
        if self.redis is not None and (password := urlsplit(self.redis.url).password):
            found.append(password)
        # A plugin's own Redis (e.g. cache.redis_url) may carry a password too.
        for section in self.sections.values():
            url = getattr(section, "redis_url", None)
            if isinstance(url, str) and (password := urlsplit(url).password):
                found.append(password)
        return [s for s in found if s and not s.startswith("sha256:")]


CORE_SECTIONS = frozenset(GatewayConfig.model_fields) - {"sections"}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}")


def interpolate(
    data: Any, env: Mapping[str, str] | None = None, path: str = ""
) -> tuple[Any, list[tuple[str, str]]]:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+word}`` in every string.

    Returns the new data and the field paths that named an unset variable with no default.
    """
    env = os.environ if env is None else env
    missing: list[tuple[str, str]] = []

    def walk(node: Any, here: str) -> Any:
        if isinstance(node, str):
            def sub(m: re.Match[str]) -> str:
                value = env.get(m.group(1))
                if m.group(2) == "-":
                    return value if value else m.group(3)
                if m.group(2) == "+":
                    return m.group(3) if value else ""
                if value is None:
                    missing.append((here, f"environment variable {m.group(1)} is not set"))
                    return ""
                return value
            return _VAR.sub(sub, node)
        if isinstance(node, dict):
            return {k: walk(v, f"{here}.{k}" if here else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{here}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(data, path), missing


def loc_to_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    """pydantic ``('providers', 2, 'type')`` -> ``providers[2].type``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def pydantic_problems(exc: Any, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append((loc_to_path(loc, prefix), msg))
    return problems


def raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise ConfigError(problems)
