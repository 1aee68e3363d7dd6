"""``llm-gateway reload`` through the PID file, and SIGHUP reaching every --workers process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support import free_port, wait_healthy

MOCK = {"name": "mock", "type": "mock", "models": ["mock-1"], "health_check": {"enabled": False}}
SMART = {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}


class Server:
    """``llm-gateway serve`` in a subprocess, its stderr collected line by line."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp_path / "gateway.yaml"
        self.pid_file = tmp_path / "run" / "gateway.pid"
        self.write(config)
        self.lines: list[str] = []
        self.seen = asyncio.Condition()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    def write(self, config: dict[str, Any]) -> None:
        full = {**config, "server": {"port": self.port, "drain_timeout_s": 5, "pid_file": str(self.pid_file)}}
        self.config_path.write_text(yaml.safe_dump(full))

    async def start(self, *args: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path), *args,
            stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        await wait_healthy(self.url, self.proc, lambda: "\n".join(self.lines))

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            async with self.seen:
                self.lines.append(line.decode(errors="replace"))
                self.seen.notify_all()

    async def wait_for_lines(self, text: str, count: int) -> None:
        async with self.seen:
            await asyncio.wait_for(self.seen.wait_for(lambda: sum(text in line for line in self.lines) >= count), 30)

    async def reload(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "reload", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, out.decode()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader


async def fresh_connection_statuses(url: str, n: int) -> list[int]:
    """One new connection per request, so SO_REUSEPORT spreads them over the workers."""
    statuses = []
    for _ in range(n):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http, \
                http.post(url + "/v1/chat/completions", json=SMART) as resp:
            statuses.append(resp.status)
    return statuses


async def test_reload_command_signals_the_server_through_its_pid_file(tmp_path):
    server = Server(tmp_path, {"providers": [MOCK]})
    try:
        await server.start()
        assert server.pid_file.read_text().strip() == str(server.proc.pid)
        assert await fresh_connection_statuses(server.url, 1) == [404]
        server.write({"providers": [MOCK], "models": [{"name": "smart", "targets": ["mock/mock-1"]}]})
        code, out = await server.reload("--config", str(server.config_path))  # finds server.pid_file
        assert code == 0 and str(server.proc.pid) in out
        await server.wait_for_lines("configuration reloaded", 1)
        assert await fresh_connection_statuses(server.url, 1) == [200]
        server.write({"providers": [{**MOCK, "type": "no-such-vendor"}]})
        code, out = await server.reload("--pid-file", str(server.pid_file))  # the server validates
        assert code == 0
        await server.wait_for_lines("nothing changed", 1)
        assert any("providers[0].type" in line for line in server.lines)
        assert await fresh_connection_statuses(server.url, 1) == [200]
    finally:
        await server.stop()
    assert server.proc.returncode == 0
    assert not server.pid_file.exists()  # removed on exit
    code, out = await server.reload("--pid-file", str(server.pid_file))
    assert code == 1 and "no PID file" in out


async def test_reload_reaches_every_worker(tmp_path):
    server = Server(tmp_path, {"providers": [MOCK]})
    try:
        await server.start("--workers", "2")
        server.write({"providers": [MOCK], "models": [{"name": "smart", "targets": ["mock/mock-1"]}]})
        code, _ = await server.reload("--pid-file", str(server.pid_file))
        assert code == 0
        await server.wait_for_lines("configuration reloaded", 2)  # one line per worker
        # 40 new connections over two workers: a worker left behind would answer 404.
        assert await fresh_connection_statuses(server.url, 40) == [200] * 40
    finally:
        await server.stop()
    assert server.proc.returncode == 0


async def test_reload_without_a_pid_file_says_how_to_name_one(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"providers": [MOCK]}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "reload", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"--pid-file" in out and b"server.pid_file" in out

