"""pytest fixtures for the vendor emulators (enable with `pytest_plugins = ["tests.emulators.fixtures"]`).

    async def test_x(emulator):
        oa = await emulator("openai", api_key="k", chunk_delay=0.01)
        oa.url        # "http://127.0.0.1:<port>/v1", what a provider's `base_url` takes
        oa.state      # EmulatorState: requests, faults, events
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from . import anthropic, cohere, openai, openai_compat
from .base import EmulatorState

# Path a vendor's base_url carries, per PROVIDERS.md §0 (the adapter appends the rest).
BASE_PATHS = {"openai": "/v1", "azure": "", "anthropic": "", "cohere": "", "perplexity": "", "grok": "/v1",
              "blackbox": "", "openrouter": "/api/v1"}
STATE_FIELDS = {f.name for f in dataclasses.fields(EmulatorState)}


def build_app(vendor: str, state: EmulatorState, **options: Any) -> web.Application:
    """options: azure → `deployments`; perplexity → `reject_tools`."""
    if vendor in ("openai", "azure"):
        return openai.create_app(state, flavor=vendor, **options)
    if vendor == "anthropic":
        return anthropic.create_app(state, **options)
    if vendor == "cohere":
        return cohere.create_app(state, **options)
    if vendor in openai_compat.VENDORS:
        return openai_compat.create_app(state, vendor, **options)
    raise ValueError(f"unknown emulator vendor {vendor!r}; known: {', '.join(BASE_PATHS)}")


@dataclasses.dataclass
class RunningEmulator:
    vendor: str
    state: EmulatorState
    server: TestServer

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + BASE_PATHS[self.vendor]


EmulatorFactory = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorFactory]:
    """Factory: `await emulator(vendor, state=None, **opts)`; opts naming EmulatorState fields (api_key,
    chunk_delay, reply_text, known_models, release, …) build the state, the rest go to create_app."""
    running: list[RunningEmulator] = []

    async def start(vendor: str, *, state: EmulatorState | None = None, **opts: Any) -> RunningEmulator:
        state_opts = {k: opts.pop(k) for k in list(opts) if k in STATE_FIELDS}
        if state is None:
            state = EmulatorState(**state_opts)
        elif state_opts:
            raise TypeError("pass either state= or state fields, not both")
        server = TestServer(build_app(vendor, state, **opts), host="127.0.0.1")
        # TestServer cancels handlers on client disconnect (the emulators count that); a short shutdown
        # timeout keeps teardown fast when a test leaves a stalled stream behind.
        await server.start_server(shutdown_timeout=0.2)
        emu = RunningEmulator(vendor, state, server)
        running.append(emu)
        return emu

    yield start
    for emu in reversed(running):
        if emu.state.release is not None:
            emu.state.release.set()
        await emu.server.close()


def parse_sse(text: str, *, comments: bool = False) -> list[tuple[str | None, str]]:
    """Split an SSE body into (event name, data) pairs; `: comment` lines become ("comment", text) when asked."""
    out: list[tuple[str | None, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                if comments:
                    out.append(("comment", line[1:].strip()))
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            out.append((event, "\n".join(data)))
    return out
