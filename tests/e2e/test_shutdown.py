"""SIGTERM: stop accepting, let in-flight streams finish, close everything, exit 0 — and no
unclosed session or transport along the way (ResourceWarnings are errors in the child)."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import yaml

from tests.support import free_port, wait_healthy


async def start_gateway(tmp_path, config: dict) -> asyncio.subprocess.Process:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error::ResourceWarning", "-m", "gateway", "serve", "--config", str(path),
        stderr=asyncio.subprocess.PIPE,
    )


async def refused(url: str) -> bool:
    async with aiohttp.ClientSession() as fresh:
        try:
            async with fresh.get(url + "/health"):
                return False
        except aiohttp.ClientConnectionError:
            return True


async def test_sigterm_drains_in_flight_stream_and_exits_cleanly(tmp_path, emulator):
    # The emulator holds the stream after its first event until released: it is provably in
    # flight for the whole time the gateway is draining.
    emu = await emulator("openai", release=asyncio.Event())
    port = free_port()
    proc = await start_gateway(tmp_path, {
        "server": {"host": "127.0.0.1", "port": port, "drain_timeout_s": 10},
        "providers": [{"name": "oai", "type": "openai", "base_url": emu.url, "api_key": "test-key",
                       "models": ["gpt-4o-mini"], "health_check": {"enabled": False}}],
    })
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        async with aiohttp.ClientSession() as session:
            body = {"model": "gpt-4o-mini", "stream": True,
                    "messages": [{"role": "user", "content": "a b c d e f g h"}]}
            async with session.post(url + "/v1/chat/completions", json=body) as resp:
                await resp.content.readuntil(b"\n\n")  # the stream is under way
                proc.send_signal(signal.SIGTERM)
                for _ in range(100):  # new connections are refused once draining began
                    if await refused(url):
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("still accepting connections while draining")
                assert emu.state.streams_closed == 0
                emu.state.release.set()
                rest = await asyncio.wait_for(resp.content.read(), 10)
            assert rest.rstrip().endswith(b"data: [DONE]")
        code = await asyncio.wait_for(proc.wait(), 15)
        stderr = (await proc.stderr.read()).decode()
        assert code == 0, stderr
        assert "Unclosed" not in stderr and "ResourceWarning" not in stderr and "Traceback" not in stderr, stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
