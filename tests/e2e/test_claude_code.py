"""Claude Code itself (the CLI bundled in the ``claude-agent-sdk`` package), offline, with
``ANTHROPIC_BASE_URL`` at the gateway: it completes a task that needs a tool call (Write), once
relayed natively to the anthropic emulator and once translated to the openai emulator. Both
emulators script the tool call; the file on disk proves Claude Code ran it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from tests.emulators.base import ToolReply

pytestmark = pytest.mark.timeout(180)
OFF = {"health_check": {"enabled": False}, "retry": {"attempts": 0}}
# Claude Code asks for bare Claude ids (and a small one for background work): an alias serves both.
ALIAS = "claude-sonnet-4-6"


def claude_cli() -> Path:
    sdk = pytest.importorskip("claude_agent_sdk", reason="claude-agent-sdk (bundles the Claude Code CLI)")
    path = Path(sdk.__file__).parent / "_bundled" / "claude"
    if not path.exists():
        pytest.skip("this claude-agent-sdk wheel bundles no CLI")
    return path


async def run_claude(gateway_url: str, workdir: Path, home: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE", "OTEL_"))} | {
        "HOME": str(home), "ANTHROPIC_BASE_URL": gateway_url, "ANTHROPIC_AUTH_TOKEN": "gateway-client-key",
        "ANTHROPIC_MODEL": ALIAS, "ANTHROPIC_DEFAULT_HAIKU_MODEL": ALIAS, "ANTHROPIC_SMALL_FAST_MODEL": ALIAS,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
    proc = await asyncio.create_subprocess_exec(
        str(claude_cli()), "-p", "Create hello.txt containing hi", "--output-format", "json",
        "--permission-mode", "acceptEdits", "--allowedTools", "Write", "--max-turns", "4",
        cwd=workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 150)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def provider(vendor: str, url: str) -> dict[str, Any]:
    if vendor == "anthropic":
        return {"name": "up", "type": "anthropic", "base_url": url, "api_key": "sk-up", "models": ["claude-up"], **OFF}
    return {"name": "up", "type": "openai", "base_url": url, "api_key": "sk-up", "models": ["gpt-up"], **OFF}


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_claude_code_completes_a_tool_task(gateway, emulator, tmp_path, vendor):
    claude_cli()
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    target = work / "hello.txt"
    emu = await emulator(vendor, api_key="sk-up", reply_text="Done: hello.txt is written.",
                         tool_reply=ToolReply(name="Write", arguments={"file_path": str(target), "content": "hi"}))
    model = "up/claude-up" if vendor == "anthropic" else "up/gpt-up"
    gw = await gateway(make_config(provider(vendor, emu.url), models=[{"name": ALIAS, "targets": [model]}]))
    code, out = await run_claude(gw.url, work, home)
    assert code == 0, out[-3000:]
    assert target.read_text() == "hi"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["is_error"] is False and "hello.txt" in result["result"]
    paths = {r.path for r in emu.state.requests}
    assert paths == ({"/v1/messages"} if vendor == "anthropic" else {"/v1/chat/completions"}), paths
    if vendor == "openai":
        assert all(len(r.json["user"]) <= 64 for r in emu.state.requests)
    sent = json.dumps([r.json for r in emu.state.requests])
    assert "gateway-client-key" not in sent and "gateway-client-key" not in json.dumps(
        [dict(r.headers) for r in emu.state.requests])
