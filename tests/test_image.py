"""The container image, built by ``deploy/build.sh image`` and run on a real Docker engine.

Opt-in (``LLM_GATEWAY_TEST_IMAGE=1``; ``.ci/run`` sets it): it needs root or a running engine and takes
minutes. ``tests/docker_engine.py`` finds or starts the engine, ``tests/image_base.py`` the base image.
The measured image size and durations are printed (run with ``-s`` or read the ``-rA`` report).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.artifact_checks import stream_survives_stop, streamed_chat, wait_for_health
from tests.docker_engine import Engine, docker_engine, ensure_binary, image_size_mb, inspect, run
from tests.image_base import base_image

ROOT = Path(__file__).resolve().parents[1]
TAG = f"llm-gateway-test/app:{os.getpid()}"
APP_UID = "10001"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

pytestmark = [
    pytest.mark.skipif(os.environ.get("LLM_GATEWAY_TEST_IMAGE") != "1",
                       reason="set LLM_GATEWAY_TEST_IMAGE=1 (builds the image on a real Docker engine)"),
    pytest.mark.timeout(900),  # a hang guard: measured 4-9 min on a loaded 2-core machine
]


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[image] {line}")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with docker_engine() as found:
        yield found


@pytest.fixture(scope="module")
def image(engine: Engine) -> Iterator[tuple[str, dict[str, Any]]]:
    """The image, built from this checkout the way CI and users build it: ``deploy/build.sh image``."""
    facts: dict[str, Any] = {}
    start = time.monotonic()
    base, facts["base"] = base_image(engine)
    facts["base_s"] = time.monotonic() - start
    env = {**os.environ, **engine.env, "DOCKER": engine.cli, "LLM_GATEWAY_IMAGE": TAG,
           "LLM_GATEWAY_IMAGE_BASE": base}
    # The host network: our own engine adds no NAT, and the builder stage fetches wheels from the index.
    proxies = [a for v in PROXY_VARS if os.environ.get(v) for a in ("--build-arg", v)]
    start = time.monotonic()
    result = run(["bash", str(ROOT / "deploy/build.sh"), "image", "--network=host", *proxies], timeout=480, env=env)
    facts["build_s"] = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-5000:]
    facts["size_mb"] = image_size_mb(engine, TAG)
    try:
        yield TAG, facts
    finally:
        engine.run("rmi", "-f", TAG)


def test_image_holds_no_pip_no_compiler_and_reports_its_size(
        engine: Engine, image: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    tag, facts = image
    probe = ("for py in python3 /usr/bin/python3 /usr/local/bin/python3; do"
             " command -v $py >/dev/null && $py -c 'import pip' 2>/dev/null && echo \"pip importable by $py\"; done;"
             " for tool in pip pip3 gcc cc c++ g++ clang make; do"
             " command -v $tool >/dev/null && echo \"$tool on PATH\"; done;"
             " python -c 'import gateway, plugins, uvloop' && id -u")
    out = engine.check("run", "--rm", "--entrypoint", "sh", tag, "-c", probe).splitlines()
    assert out == [APP_UID], out
    version = engine.check("run", "--rm", tag, "--version")
    assert version.startswith("llm-gateway ")
    report(capsys, f"base {facts['base']} ready in {facts['base_s']:.0f} s; image built in "
                   f"{facts['build_s']:.0f} s; size {facts['size_mb']:.0f} MB ({version})")
    assert facts["size_mb"] < 600


async def test_container_serves_streams_turns_healthy_and_drains_on_stop(
        engine: Engine, image: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    tag, _ = image
    # As compose and Kubernetes run it: read-only root, no capabilities; a 1 s health interval so
    # that the image's own HEALTHCHECK command (its URL untouched) is judged within seconds.
    cid = engine.check("run", "-d", "-p", "127.0.0.1:0:8080", "--read-only", "--tmpfs", "/tmp",
                       "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--health-interval", "1s",
                       tag)
    try:
        start = time.monotonic()
        host_port = engine.check("port", cid, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{host_port}"

        def alive() -> bool:
            return inspect(engine, cid)["State"]["Running"]  # type: ignore[index,no-any-return]

        up_s = await wait_for_health(url, alive)
        # The probe runs in the container's own network namespace (a bridge, not the host's network).
        assert inspect(engine, cid)["HostConfig"]["NetworkMode"] in {"default", "bridge"}  # type: ignore[index]
        healthy_s = await asyncio.to_thread(wait_healthy, engine, cid)
        assert await streamed_chat(url, "hello from the image") == "You said: hello from the image"
        assert server_uids(engine, cid) == {APP_UID}
        since_start = time.monotonic()

        async def stop() -> float:
            result = await asyncio.to_thread(engine.run, "stop", "-t", "45", cid, timeout=90)
            assert result.returncode == 0, result.stderr
            return time.monotonic() - since_start

        stop_s = await stream_survives_stop(url, stop)
        state = inspect(engine, cid)["State"]
        assert state["ExitCode"] == 0, state  # type: ignore[index]
        logs = engine.run("logs", cid)
        assert "draining" in logs.stdout + logs.stderr and "stopped" in logs.stdout + logs.stderr
        report(capsys, f"/health after {up_s:.1f} s, healthy after {healthy_s:.1f} s (interval 1 s), "
                       f"docker stop with a stream in flight took {stop_s:.1f} s, exit 0")
        assert time.monotonic() - start < 120
    finally:
        engine.run("rm", "-f", cid)


def server_uids(engine: Engine, cid: str) -> set[str]:
    """Real, effective, saved and file-system uids of the container's PID 1, the gateway."""
    status = engine.check("exec", cid, "cat", "/proc/1/status")
    return set(next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")))


def wait_healthy(engine: Engine, cid: str, timeout_s: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        health = inspect(engine, cid)["State"]["Health"]  # type: ignore[index]
        if health["Status"] == "healthy":
            return time.monotonic() - start
        assert health["Status"] != "unhealthy", health["Log"][-1:]
        time.sleep(0.25)  # the engine's own probe schedule: nothing to wait on but its state
    raise AssertionError(f"the HEALTHCHECK did not turn healthy within {timeout_s:.0f} s")


def test_compose_file_passes_compose_config() -> None:
    """``docker compose config`` where the Compose v2 plugin exists, else Debian's ``docker-compose`` (v1):
    v1 predates the Compose Spec's top-level ``name:``, so it gets the project name from ``-p`` instead."""
    compose_file = ROOT / "deploy" / "compose.yaml"
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"], timeout=30).returncode == 0:
        result = run([docker, "compose", "-f", str(compose_file), "config", "-q"], timeout=60)
        assert result.returncode == 0, result.stderr
        return
    v1 = ensure_binary("docker-compose", "docker-compose")
    text = compose_file.read_text(encoding="utf-8")
    name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("name:"))
    without_name = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("name:"))
    copy = compose_file.with_name(f".compose-v1-{os.getpid()}.yaml")  # beside it: relative paths resolve
    try:
        copy.write_text(without_name, encoding="utf-8")
        result = run([v1, "-p", name, "-f", str(copy), "config", "-q"], timeout=60)
    finally:
        copy.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
