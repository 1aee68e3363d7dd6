"""The shared-store connections: config validation, one pool per URL, bounded waits, clean close."""

from __future__ import annotations

import asyncio
import time

import pluggy
import pytest
import redis.exceptions

from gateway import hookimpl
from gateway.config import GatewayConfig, RedisConfig
from gateway.errors import ConfigError
from gateway.loader import load_data
from gateway.plugin_manager import make_plugin_manager
from gateway.redis_client import RedisConnections
from tests.conftest import make_config
from tests.services import RedisServer


@pytest.mark.parametrize("url, problem", [
    ("http://127.0.0.1:6379/0", "must be a redis://"),
    ("redis://127.0.0.1:port/0", "port that is not a number"),
    ("redis:///0", "needs a host"),
    ("redis://127.0.0.1:6379/zero", "database number"),
    ("unix://", "socket path"),
])
def test_a_redis_url_that_does_not_parse_names_the_field(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_data(make_config(redis={"url": url}), {})
    assert any(path == "redis.url" and problem in msg for path, msg in info.value.problems)


def test_the_url_password_is_a_redacted_secret_and_never_in_an_error() -> None:
    loaded = load_data(make_config(redis={"url": "redis://:s3cret-pw@127.0.0.1:6379/0"}), {})
    assert "s3cret-pw" in loaded.config.secrets
    with pytest.raises(ConfigError) as info:
        load_data(make_config(redis={"url": "redis://:s3cret-pw@127.0.0.1:nope/0"}), {})
    assert "s3cret-pw" not in str(info.value)


async def test_one_client_per_url_and_commands_reach_the_server(redis_server: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_server.url))
    try:
        assert conns.client() is conns.client(redis_server.url)
        await conns.client().set("k", "v")
        assert await conns.client().get("k") == b"v"
        other = conns.client(redis_server.url.replace("/0", "/1"))
        assert other is not conns.client()
        assert await other.get("k") is None
    finally:
        await conns.close()


async def test_a_paused_redis_costs_one_timeout_not_retries(redis_private: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_private.url, timeout_s=0.05))
    try:
        await conns.client().ping()
        redis_private.pause()
        started = time.perf_counter()
        with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)):
            await conns.client().get("k")
        assert time.perf_counter() - started < 0.5  # one 50 ms timeout, no retry with backoff
    finally:
        redis_private.resume()
        await conns.close()


async def test_a_burst_larger_than_the_pool_waits_for_a_connection(redis_server: RedisServer) -> None:
    conns = RedisConnections(RedisConfig(url=redis_server.url, max_connections=2, pool_wait_s=2))
    try:
        client = conns.client()
        results = await asyncio.gather(*(client.incr("n") for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
    finally:
        await conns.close()



class CrossSectionPlugin:
    @hookimpl
    def gateway_check_config(self, config: GatewayConfig) -> list[tuple[str, str]]:
        return [("cache.backend", "redis needs a top-level redis section")] if config.redis is None else []


def test_a_cross_section_problem_from_a_plugin_is_reported_with_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def with_plugin() -> pluggy.PluginManager:
        pm = make_plugin_manager()
        pm.register(CrossSectionPlugin(), name="cross-section-test")
        return pm

    monkeypatch.setattr("gateway.loader.make_plugin_manager", with_plugin)
    with pytest.raises(ConfigError) as info:
        load_data(make_config(), {})
    assert ("cache.backend", "redis needs a top-level redis section") in info.value.problems
    load_data(make_config(redis={"url": "redis://127.0.0.1:6379/0"}), {})  # the section is there: no problem
