"""Small helpers shared by the end-to-end and fault tests."""

from __future__ import annotations

from typing import Any

import aiohttp


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
