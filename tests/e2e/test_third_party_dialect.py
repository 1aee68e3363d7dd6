"""A third-party distribution (tests/thirdparty/llm-gateway-plaintext) adds an inbound dialect
through its entry point alone: installed into a temporary directory, found via PYTHONPATH by the
real ``llm-gateway serve``, with no change to the gateway."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.e2e.test_third_party_plugin import cli, read_log, run
from tests.support import free_port, terminate, wait_healthy

DIST = Path(__file__).parents[1] / "thirdparty" / "llm-gateway-plaintext"
pytestmark = pytest.mark.timeout(90)


async def test_entry_point_dialect_serves_its_wire_format(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "drain_timeout_s": 2},
        "providers": [{"name": "mock", "type": "mock", "models": ["mock-1"], "health_check": {"enabled": False}}],
    }))
    target = tmp_path / "site"
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    code, out = await run(
        sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
        "--disable-pip-version-check", "--target", str(target), str(DIST), env=base_env, cwd=tmp_path)
    assert code == 0, out
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *cli(), "serve", "--config", str(config), env=base_env | {"PYTHONPATH": str(target)}, cwd=tmp_path,
            stdout=sink, stderr=sink)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, proc, lambda: read_log(log))
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/plain", json={"model": "mock-1", "prompt": "hi plain"}) as resp:
                answer = await resp.json()
            async with http.post(url + "/v1/plain", json={"model": "mock-1", "prompt": "a b", "stream": True}) as resp:
                streamed = await resp.text()
            async with http.post(url + "/v1/plain", json={"model": "nope", "prompt": "x"}) as resp:
                missing, problem = resp.status, await resp.json()
        assert "hi plain" in answer["text"]
        assert streamed.startswith("data: ") and streamed.endswith("event: end\ndata: \n\n")
        assert missing == 404 and "nope" in problem["problem"]
    finally:
        code = await terminate(proc)
    assert code == 0, read_log(log)
