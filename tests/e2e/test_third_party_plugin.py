"""A third-party distribution (tests/thirdparty/llm-gateway-acme) adds a provider type and a hook plugin
through entry points alone: installed into a temporary directory, found via PYTHONPATH by the real
``llm-gateway`` command, with no change to the gateway."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import openai
import pytest
import yaml

from tests.support import free_port, terminate, wait_healthy

DIST = Path(__file__).parents[1] / "thirdparty" / "llm-gateway-acme"
KEY = "acme-upstream-key"
pytestmark = pytest.mark.timeout(90)


def cli() -> list[str]:
    script = Path(sys.executable).with_name("llm-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


async def run(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run a command to completion; killed (and reaped) if the test gives up on it."""
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def test_entry_point_provider_and_hook_plugin_work_with_no_gateway_change(emulator, tmp_path: Path) -> None:
    upstream = await emulator("openai", api_key=KEY)
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "drain_timeout_s": 2},
        "providers": [{"name": "acme", "type": "acme", "base_url": upstream.url, "api_key": KEY,
                       "models": ["gpt-4o-mini"], "health_check": {"enabled": False}}],
    }))
    target = tmp_path / "site"
    # No PYTHONPATH: only what is installed counts. No bytecode: the source tree stays clean.
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    async with asyncio.TaskGroup() as tg:  # independent steps run side by side (time budget)
        install = tg.create_task(run(
            sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check", "--target", str(target), str(DIST), env=base_env, cwd=tmp_path))
        before = tg.create_task(run(*cli(), "check-config", str(config), env=base_env, cwd=tmp_path))
    (code, out), (unknown, why) = install.result(), before.result()
    assert code == 0, out
    assert unknown == 2 and "providers[0].type" in why and "'acme'" in why  # before the install: unknown type

    env = base_env | {"PYTHONPATH": str(target)}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *cli(), "serve", "--config", str(config), env=env, cwd=tmp_path, stdout=sink, stderr=sink)
    try:
        url = f"http://127.0.0.1:{port}"
        async with asyncio.TaskGroup() as tg:
            check = tg.create_task(run(*cli(), "check-config", str(config), env=env, cwd=tmp_path))
            providers = tg.create_task(run(*cli(), "providers", env=env, cwd=tmp_path))
            tg.create_task(wait_healthy(url, proc, lambda: read_log(log)))
        (checked, check_out), (listed, listing) = check.result(), providers.result()
        assert checked == 0, check_out
        assert listed == 0 and any(line.split()[:2] == ["acme", "acme_provider:AcmeAdapter"]
                                   for line in listing.splitlines())
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi acme"}], logit_bias={"1": 1})
            resp = raw.parse()
            with pytest.raises(openai.BadRequestError, match="acme"):  # the adapter's own capability list
                await client.completions.create(model="gpt-4o-mini", prompt="x")
        assert resp.choices[0].message.content == "Hello from openai! You said: hi acme"
        assert raw.headers["x-gateway-provider"] == "acme"
        assert raw.headers["x-acme-tokens"] == str(resp.usage.total_tokens)  # the hook plugin's header
        sent = upstream.state.requests[0]
        assert sent.headers["authorization"] == f"Bearer {KEY}" and "logit_bias" not in sent.json
    finally:
        code = await terminate(proc)
    assert code == 0, read_log(log)
