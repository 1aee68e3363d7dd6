"""Small helpers shared by the end-to-end and fault tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml


def openai_provider(url: str, name: str = "oai", **extra: Any) -> dict[str, Any]:
    """An `openai` provider pointed at an emulator, with retries and health checks off unless asked."""
    return {"name": name, "type": "openai", "base_url": url, "api_key": "test-key", "models": ["gpt-4o-mini"],
            "health_check": {"enabled": False}, "retry": {"attempts": 0}, **extra}


def chat_body(stream: bool = True, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "one two three four five"}], **extra}


async def read_events(resp: aiohttp.ClientResponse) -> list[bytes]:
    """SSE data payloads, in order, until the server ends the body."""
    events, buf = [], b""
    async for data in resp.content.iter_any():
        buf += data
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            events += [line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")]
    return events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, explain: Callable[[], str] = str) -> None:
    """Poll ``/health`` of a gateway subprocess until it answers 200 (30 s at most)."""
    deadline = time.monotonic() + 30  # generous: a loaded CI box starts Python slowly
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.returncode is None, f"gateway exited early {explain()}"
            with contextlib.suppress(aiohttp.ClientConnectionError):  # not listening yet
                async with http.get(url + "/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"gateway did not become healthy {explain()}")


async def drain(stream: Any) -> list[Any]:
    """Every item of an SDK stream (so its errors surface), as a list."""
    return [item async for item in stream]


async def terminate(proc: asyncio.subprocess.Process, wait_s: float = 15) -> int:
    """SIGTERM a gateway subprocess (if it still runs) and wait for its exit code; killed, reaped
    and the timeout raised when it does not stop in time."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), wait_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


@contextlib.asynccontextmanager
async def serve_workers(config: dict[str, Any], directory: Path, workers: int = 2) -> AsyncIterator[str]:
    """``llm-gateway serve --workers N`` on a free port with ``config``: its base URL once healthy;
    stopped with SIGTERM afterwards, and it must exit 0."""
    port = free_port()
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump({**config, "server": {**config.get("server", {}), "port": port}}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path), "--workers", str(workers),
        stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        yield url
        assert await terminate(proc, 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
