"""Shared fixtures: a real gateway on a loopback port, config builders, an HTTP client."""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from gateway.app import build_app
from gateway.connections import make_runner
from gateway.keys import GATEWAY
from gateway.loader import load_data
from gateway.runtime import Gateway
from tests.postgres_service import PostgresServer, running_postgres
from tests.services import RedisServer, running_redis

if importlib.util.find_spec("tests.emulators.fixtures") is not None:
    pytest_plugins = ["tests.emulators.fixtures"]

MOCK_PROVIDER: dict[str, Any] = {
    "name": "mock",
    "type": "mock",
    "models": ["mock-1", "mock-embed"],
    "options": {"reply": "echo"},
    "health_check": {"enabled": False},
}


def make_config(*providers: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A config dict: the given providers (default: the offline mock) plus any other sections."""
    config: dict[str, Any] = {"providers": [copy.deepcopy(p) for p in (providers or (MOCK_PROVIDER,))]}
    config.update(copy.deepcopy(sections))
    return config


@dataclass
class RunningGateway:
    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def gw(self) -> Gateway:
        return self.app[GATEWAY]

    @property
    def v1(self) -> str:
        return self.url + "/v1"


StartGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def gateway() -> AsyncIterator[StartGateway]:
    """``await gateway(config_dict, env={...})`` starts a gateway on 127.0.0.1 with a free port."""
    running: list[RunningGateway] = []

    async def start(config: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> RunningGateway:
        loaded = load_data(config or make_config(), env or {})
        app = build_app(loaded)
        runner = await make_runner(app, access_log=None, shutdown_timeout=5)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        gw = RunningGateway(f"http://127.0.0.1:{port}", app, runner)
        running.append(gw)
        return gw

    yield start
    for gw in reversed(running):
        await gw.runner.cleanup()


@pytest.fixture
async def sdk() -> AsyncIterator[Callable[[RunningGateway], openai.AsyncOpenAI]]:
    """``client = sdk(gw)``: the official openai SDK pointed at a gateway, closed at teardown."""
    clients: list[openai.AsyncOpenAI] = []

    def make(gw: RunningGateway) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One real ``redis-server`` for the whole run (started on first use)."""
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_server(redis_session: RedisServer) -> RedisServer:
    """The session's ``redis-server``, emptied for this test. Tests that pause, kill or restart
    the server use ``redis_private`` instead."""
    if redis_session.proc is None or redis_session.proc.poll() is not None:
        redis_session.start()
    redis_session.command("FLUSHALL")
    return redis_session


@pytest.fixture
def redis_private() -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own, free to be paused, killed and restarted."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_session() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (started on first use)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_session: PostgresServer) -> str:
    """A fresh, empty database on the session's server, for this test."""
    if postgres_session.proc is None or postgres_session.proc.poll() is not None:
        postgres_session.start()
    return postgres_session.new_database()


@pytest.fixture
def postgres_private() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, free to be stopped and started again."""
    with running_postgres() as server:
        yield server
