"""A real Docker engine for the image tests: the one that already runs, or a ``dockerd`` of our own.

Our own engine touches nothing another engine on the machine uses: its data root, exec root, pidfile,
socket and config file live in one temporary directory; it gets a bridge of its own, and runs with
``--iptables=false --ip-forward=false``, so it adds no firewall chain and flips no sysctl. Builds use
the host network (``docker build --network=host``) instead of NAT; published ports still work through
``docker-proxy``. It is stopped by PID, after its containers are removed, and its bridge is deleted.

Where no engine is installed and the tests run as root on Debian, ``docker.io`` is installed with apt;
otherwise the test is skipped, or fails under ``CI=true`` (``tests.services.require_binary``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import require_binary

APT_TIMEOUT_S = 600


def run(cmd: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None,
        **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False,
                          env=env, **kw)  # type: ignore[call-overload]


@dataclass
class Engine:
    """A docker CLI bound to one engine (``DOCKER_HOST`` when it is our own)."""

    cli: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run([self.cli, *args], timeout=timeout, env={**os.environ, **self.env})

    def check(self, *args: str, timeout: float = 120) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result.stdout.strip()

    def answers(self) -> bool:
        return self.run("version", "--format", "{{.Server.Version}}", timeout=20).returncode == 0


def debian_root() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def apt_install(*packages: str) -> None:
    """Installs Debian packages (root on Debian only); waits for another apt run rather than failing."""
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
           *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = run(cmd, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:  # a stale package list: refresh it once
        run(["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=300"], timeout=APT_TIMEOUT_S, env=env)
        result = run(cmd, timeout=APT_TIMEOUT_S, env=env)
    assert result.returncode == 0, f"apt-get install {' '.join(packages)}: {result.stderr[-2000:]}"


def ensure_binary(name: str, package: str) -> str:
    """``name``'s path, installing ``package`` first when it is missing and we may (root on Debian)."""
    found = shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name)
                                        if p.exists()), None)
    if found is None and debian_root():
        apt_install(package)
    return require_binary(name)


def pick_cli() -> str | None:
    """A docker CLI that can use BuildKit: one with the buildx plugin, else Debian's (20.10, built in)."""
    on_path = shutil.which("docker")
    if on_path and run([on_path, "buildx", "version"], timeout=20).returncode == 0:
        return on_path
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else on_path


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 for our bridge that no route on the host uses (engines default to 172.17.0.0/16)."""
    routes = run(["ip", "-4", "route"], timeout=10).stdout
    used = [ipaddress.ip_network(w, strict=False) for w in routes.split() if "/" in w and w[0].isdigit()]
    for third in range(os.getpid() % 200, os.getpid() % 200 + 50):
        net = ipaddress.ip_network(f"10.213.{third % 250}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.213.x.0/24 for the test engine's bridge")


@contextlib.contextmanager
def own_bridge() -> Iterator[str]:
    name = f"lgw{os.getpid() % 1_000_000}"
    net = free_subnet()
    gateway = f"{next(net.hosts())}/{net.prefixlen}"
    for cmd in (["ip", "link", "add", "name", name, "type", "bridge"], ["ip", "addr", "add", gateway, "dev", name],
                ["ip", "link", "set", name, "up"]):
        result = run(cmd, timeout=10)
        assert result.returncode == 0, f"{' '.join(cmd)}: {result.stderr}"
    try:
        yield name
    finally:
        run(["ip", "link", "del", name], timeout=10)


def unmount_below(root: Path) -> None:
    """Mounts an engine left under ``root`` (none after a clean stop); deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(root))), key=len, reverse=True):
        run(["umount", "-l", point], timeout=20)


@contextlib.contextmanager
def own_dockerd(dockerd: str, cli: str) -> Iterator[Engine]:
    """A dockerd of our own under a temporary directory, stopped by PID afterwards."""
    root = Path(tempfile.mkdtemp(prefix="lgwd-", dir="/tmp"))  # short: socket paths are limited to 108 bytes
    (root / "daemon.json").write_text("{}")  # not /etc/docker/daemon.json, whatever it says
    engine = Engine(cli, {"DOCKER_HOST": f"unix://{root}/docker.sock"})
    try:
        with own_bridge() as bridge, (root / "dockerd.log").open("wb") as log:
            proc = subprocess.Popen(
                [dockerd, "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"),
                 "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
                 "--host", engine.env["DOCKER_HOST"], "--bridge", bridge, "--iptables=false",
                 "--ip-forward=false", "--log-level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_until_up(engine, proc, root / "dockerd.log")
                yield engine
            finally:
                remove_everything(engine)
                stop_process(proc)
    finally:
        unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def wait_until_up(engine: Engine, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {proc.returncode}: {log.read_text()[-3000:]}")
        if engine.answers():
            return
        time.sleep(0.2)
    raise RuntimeError(f"dockerd did not answer within 60 s: {log.read_text()[-3000:]}")


def remove_everything(engine: Engine) -> None:
    """Containers and networks we made; images go with the data root."""
    ids = engine.run("ps", "-aq").stdout.split()
    if ids:
        engine.run("rm", "-f", *ids, timeout=120)
    names = engine.run("network", "ls", "--filter", "type=custom", "-q").stdout.split()
    if names:
        engine.run("network", "rm", *names)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: dockerd stops containerd and its shims and unmounts
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def docker_engine() -> Iterator[Engine]:
    """The engine that runs already (``DOCKER_HOST`` or the default socket), else one of our own."""
    cli = pick_cli()
    if cli and Engine(cli).answers():
        yield Engine(cli)
        return
    dockerd = ensure_binary("dockerd", "docker.io")
    cli = pick_cli() or require_binary("docker")
    if os.geteuid() != 0:
        message = "no Docker engine runs, and starting one of our own needs root"
        if os.environ.get("CI") == "true":  # CI promises the image test: a missing engine is a failure
            pytest.fail(message)
        pytest.skip(message)
    with own_dockerd(dockerd, cli) as engine:
        yield engine


def image_size_mb(engine: Engine, image: str) -> float:
    return int(engine.check("image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def inspect(engine: Engine, container: str) -> dict[str, object]:
    return json.loads(engine.check("inspect", container))[0]
