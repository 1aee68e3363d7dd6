"""The single-file executable, built by ``deploy/build.sh binary`` and run with no Python around it.

Opt-in (``LLM_GATEWAY_TEST_BINARY=1``; ``.ci/run`` sets it; ``LLM_GATEWAY_BINARY=PATH`` tests a file
already built): the build downloads the dependencies and
PyInstaller from the package index and takes minutes. The executable runs from an empty directory with
an empty ``PATH`` and no ``PYTHON*`` variables, so nothing of the build machine's Python can help it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.artifact_checks import stream_survives_stop, streamed_chat, wait_for_health
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = {"mock", "openai", "azure_openai", "perplexity", "grok", "blackbox", "openrouter", "anthropic",
            "cohere"}

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="deploy/build.ps1 binary builds the Windows executable"),
    pytest.mark.skipif(os.environ.get("LLM_GATEWAY_TEST_BINARY") != "1",
                       reason="set LLM_GATEWAY_TEST_BINARY=1 (builds the executable with PyInstaller)"),
    pytest.mark.timeout(900),
]


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[binary] {line}")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    """The executable ``deploy/build.sh binary`` makes; ``$LLM_GATEWAY_BINARY`` names one it made
    already (CI builds it in a step of its own, then tests and uploads that same file)."""
    prebuilt = os.environ.get("LLM_GATEWAY_BINARY")
    if prebuilt:
        yield Path(prebuilt).resolve(), 0.0
        return
    out = tmp_path_factory.mktemp("binary-build")
    env = {**os.environ, "LLM_GATEWAY_BUILD_OUT": str(out), "PYTHON": sys.executable}
    start = time.monotonic()
    result = subprocess.run(["bash", str(ROOT / "deploy/build.sh"), "binary"], capture_output=True, text=True,
                            timeout=840, env=env, check=False)
    assert result.returncode == 0, result.stderr[-5000:]
    yield out / "llm-gateway", time.monotonic() - start


@pytest.fixture
def bare(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty working directory and an environment with no way to a Python installation."""
    (tmp_path / "empty-bin").mkdir()
    env = {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "TMPDIR": str(tmp_path)}
    return tmp_path, env


def run_binary(binary: Path, bare: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    cwd, env = bare
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env,
                          check=False)


def test_commands_find_every_adapter_through_entry_points(
        binary: tuple[Path, float], bare: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    exe, build_s = binary
    start = time.monotonic()
    version = run_binary(exe, bare, "--version")
    version_s = time.monotonic() - start
    assert version.returncode == 0 and version.stdout.startswith("llm-gateway "), version.stderr
    listed = run_binary(exe, bare, "providers")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert {row[0] for row in rows} == ADAPTERS
    assert all(row[-1] == "(llm-gateway)" for row in rows), listed.stdout  # the bundled package metadata
    checked = run_binary(exe, bare, "check-config")
    assert checked.returncode == 0 and "OK (2 providers)" in checked.stdout, checked.stdout + checked.stderr
    broken = bare[0] / "gateway.yaml"
    broken.write_text("providers: nope\n")
    rejected = run_binary(exe, bare, "check-config")
    assert rejected.returncode == 2 and "providers" in rejected.stderr, rejected.stderr
    report(capsys, f"built in {build_s:.0f} s; {exe.stat().st_size / 1e6:.0f} MB; "
                   f"`--version` took {version_s:.2f} s ({version.stdout.strip()})")


async def test_serve_streams_the_default_config_and_drains_on_sigterm(
        binary: tuple[Path, float], bare: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    exe, _ = binary
    cwd, env = bare
    port = free_port()
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(exe), "serve", "--port", str(port), cwd=cwd, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        up_s = await wait_for_health(url, lambda: proc.returncode is None)
        assert await streamed_chat(url, "hello from one file") == "You said: hello from one file"

        async def stop() -> int:
            proc.send_signal(signal.SIGTERM)
            return await asyncio.wait_for(proc.wait(), 45)

        assert await stream_survives_stop(url, stop) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert "draining" in log and "stopped" in log, log[-2000:]
    report(capsys, f"`serve` answered /health after {up_s:.2f} s (start-up, one-file extraction included)")
    assert time.monotonic() - start < 120
