"""cache.backend: redis across processes: an answer stored through one `serve` process is a HIT
through another (two processes on different ports sharing one real redis-server), also when the
second client streams."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import yaml

from tests.services import RedisServer
from tests.support import free_port, read_events, wait_healthy

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "shared across processes"}]}


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, name: str, redis_url: str) -> AsyncIterator[str]:
    port = free_port()
    config = {"server": {"port": port, "drain_timeout_s": 5},
              "providers": [{"name": "mock", "type": "mock", "models": ["mock-1"], "options": {"reply": "echo"},
                             "health_check": {"enabled": False}}],
              # A loaded test machine can take longer than the 50 ms default to answer: not what this tests.
              "redis": {"url": redis_url, "timeout_s": 2},
              "cache": {"enabled": True, "backend": "redis"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path), stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)


async def stored(redis: RedisServer, count: int) -> bool:
    """Whether ``count`` entries are in Redis, waiting briefly: an answer is stored just after
    its client got the last byte."""
    for _ in range(200):
        if redis.command("DBSIZE") == f":{count}\r\n".encode():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_an_answer_through_process_a_is_a_hit_through_process_b(tmp_path: Path, redis_server: RedisServer):
    async with serve(tmp_path, "a", redis_server.url) as a, serve(tmp_path, "b", redis_server.url) as b, \
            aiohttp.ClientSession() as http:
        async with http.post(a + "/v1/chat/completions", json=BODY) as resp:
            assert resp.status == 200 and resp.headers["x-cache"] == "MISS"
            first = await resp.json()
        assert await stored(redis_server, 1)
        async with http.post(b + "/v1/chat/completions", json=BODY) as resp:
            assert resp.status == 200 and resp.headers["x-cache"] == "HIT"
            assert resp.headers["x-gateway-provider"] == "mock"
            assert await resp.json() == first  # the same answer, id included
        async with http.post(b + "/v1/chat/completions", json={**BODY, "stream": True}) as resp:
            assert resp.status == 200 and resp.headers["x-cache"] == "HIT"
            assert resp.content_type == "text/event-stream"
            events = await read_events(resp)
        assert events[-1] == b"[DONE]"
        chunks = [orjson.loads(e) for e in events[:-1]]
        assert chunks[0]["id"] == first["id"]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == \
            first["choices"][0]["message"]["content"]
