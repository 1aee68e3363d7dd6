"""Checks shared by the tests of the built artifacts (container image, single-file executable): each
talks to a gateway that runs the repository's default ``gateway.yaml`` (the offline ``mock`` provider,
which echoes the last user message word by word, 20 ms apart) over a real loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from tests.support import read_events


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


async def wait_for_health(base_url: str, alive: Callable[[], bool], timeout_s: float = 60) -> float:
    """Seconds until ``GET /health`` answers 200; fails early when ``alive()`` turns false."""
    start = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - start < timeout_s:
            assert alive(), "the gateway exited before it answered /health"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base_url}/health") as resp:
                    if resp.status == 200:
                        assert (await resp.json())["status"] == "ok"
                        return time.monotonic() - start
            await asyncio.sleep(0.1)
    raise AssertionError(f"no answer from {base_url}/health within {timeout_s:.0f} s")


def chat_body(text: str) -> dict[str, Any]:
    # max_tokens: the mock stops at 64 words unless told otherwise
    return {"model": "mock-1", "stream": True, "max_tokens": len(text.split()) + 8,
            "messages": [{"role": "user", "content": text}]}


def content_of(events: list[bytes]) -> str:
    assert events and events[-1] == b"[DONE]", f"stream did not end with [DONE]: {events[-3:]}"
    chunks: list[dict[str, Any]] = [orjson.loads(e) for e in events[:-1]]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


async def streamed_chat(base_url: str, text: str) -> str:
    """One streamed chat completion through the mock provider; returns the streamed content."""
    async with aiohttp.ClientSession() as http, \
            http.post(f"{base_url}/v1/chat/completions", json=chat_body(text)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return content_of(await read_events(resp))


async def stream_survives_stop(base_url: str, stop: Callable[[], Awaitable[Any]], n_words: int = 120) -> Any:
    """Starts a ~2.4 s stream, calls ``stop()`` once the first chunk arrived, and checks that the
    stream still completes in full; returns what ``stop()`` returned."""
    text = words(n_words)
    async with aiohttp.ClientSession() as http, \
            http.post(f"{base_url}/v1/chat/completions", json=chat_body(text)) as resp:
        assert resp.status == 200, await resp.text()
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"data: "), first
        stopping = asyncio.ensure_future(stop())
        rest = await read_events(resp)
        stopped = await stopping
    streamed = content_of([first[6:].strip(), *rest])
    assert text in streamed, f"the in-flight stream was cut: {streamed[-200:]!r}"
    return stopped
