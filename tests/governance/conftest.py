"""Config builders and helpers for the governance tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from plugins.governance import GOVERNANCE
from tests.conftest import RunningGateway, make_config

ADMIN_KEY = "adm-" + "x7Qe9" * 6
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# USD per million tokens: large, so a few requests spend a small budget.
PRICING = {"mock/mock-1": {"input": 1000.0, "output": 2000.0}}


def governance_config(db: Path | str, *providers: dict[str, Any], **sections: Any) -> dict[str, Any]:
    url = db if isinstance(db, str) and "://" in db else f"sqlite:///{db}"
    store = {"url": url, "poll_interval_s": 0.2, "flush_interval_s": 0.2, **sections.pop("store", {})}
    return make_config(*providers, admin={"keys": [ADMIN_KEY]}, store=store, pricing=PRICING, **sections)


def chat(content: str = "hello there friend", **extra: Any) -> dict[str, Any]:
    return {"model": "mock-1", "messages": [{"role": "user", "content": content}], "max_tokens": 5, **extra}


async def admin_call(http: aiohttp.ClientSession, gw: RunningGateway, method: str, path: str,
                     body: Any = None) -> tuple[int, Any]:
    async with http.request(method, gw.url + path, json=body, headers=ADMIN) as resp:
        return resp.status, await resp.json()


async def completion(http: aiohttp.ClientSession, gw: RunningGateway, key: str | None,
                     body: dict[str, Any] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(gw.v1 + "/chat/completions", json=body or chat(), headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def flushed(gw: RunningGateway) -> None:
    """Until the spend writer has written everything buffered so far."""
    writer = gw.app[GOVERNANCE].writer
    deadline = time.monotonic() + 10
    while writer.buffer and time.monotonic() < deadline:
        await asyncio.wait_for(writer.flushed.wait(), 10)
    await asyncio.wait_for(writer.flushed.wait(), 10)  # and one more, so the counters were read back
