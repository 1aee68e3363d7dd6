"""--workers N: N processes share one port (SO_REUSEPORT); SIGTERM to the parent stops them all."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.support import free_port, wait_healthy


def workers_of(pid: int) -> list[int]:
    """Worker processes of a supervisor: spawned children (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and b"zombie" not in status.read_bytes().lower()


async def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path):
    port = free_port()
    config = {"server": {"port": port, "drain_timeout_s": 5},
              "providers": [{"name": "mock", "type": "mock", "models": ["mock-1"]}]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path), "--workers", "2",
        stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        workers: list[int] = []
        for _ in range(100):
            workers = workers_of(proc.pid)
            if len(workers) >= 2:
                break
            await asyncio.sleep(0.05)
        assert len(workers) >= 2
        async with aiohttp.ClientSession() as session:
            body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(20):
                async with session.post(url + "/v1/chat/completions", json=body) as resp:
                    assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert not any(running(w) for w in workers)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
