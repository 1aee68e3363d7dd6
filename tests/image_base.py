"""The base image for the image test: the official ``python:3.11-slim`` when it can be pulled, else a
Debian base made here with ``debootstrap`` and ``docker import`` (no registry needed).

The local base is Debian's own Python 3.11 (``python3``, ``python3-venv``) on a minbase root file system.
It trusts the host's extra CA certificates and carries the host's pip index settings, so that pip inside
the build reaches the package index the way the host does (for example through a TLS-intercepting egress
proxy). The debootstrapped root file system is cached as a tarball between runs on one machine
(``$LLM_GATEWAY_TEST_CACHE``, default ``~/.cache/llm-gateway-tests``); a fresh machine builds it anew.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.docker_engine import Engine, ensure_binary, run

OFFICIAL = "python:3.11-slim"
LOCAL = "llm-gateway-test/python:3.11-bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout")
DEBOOTSTRAP_TIMEOUT_S = 600


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-gateway-tests"
    path = Path(os.environ.get("LLM_GATEWAY_TEST_CACHE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror() -> tuple[str, str]:
    """(mirror URI, suite) of the host's own Debian apt source, so debootstrap goes where apt goes."""
    suite = re.search(r"^VERSION_CODENAME=(\w+)", Path("/etc/os-release").read_text(), re.M)
    codename = suite[1] if suite else "bookworm"
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in (s for s in sources if s.is_file()):
        text = source.read_text(errors="replace")
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:(.*)$", stanza, re.M)
            if uris and suites and codename in suites[1].split():
                return uris[1], codename
        for match in re.finditer(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{codename}\s", text, re.M):
            return match[1], codename
    return "http://deb.debian.org/debian", codename


def rootfs_tarball() -> Path:
    """A trimmed Debian minbase with Python, as a tarball: cached, else made with debootstrap."""
    mirror, suite = debian_mirror()
    tarball = cache_dir() / f"debian-{suite}-minbase-python3.tar"
    if tarball.exists():
        return tarball
    debootstrap = ensure_binary("debootstrap", "debootstrap")
    with tempfile.TemporaryDirectory(prefix="lgw-rootfs-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = run([debootstrap, "--variant=minbase", f"--include={PACKAGES}", suite, str(rootfs), mirror],
                     timeout=DEBOOTSTRAP_TIMEOUT_S)
        assert result.returncode == 0, f"debootstrap: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        run(["sh", "-c", "rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*"], cwd=rootfs)
        partial = tarball.with_suffix(".part")
        result = run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
        assert result.returncode == 0, result.stderr
        partial.rename(tarball)  # only a complete tarball is ever reused
    return tarball


def host_pip_conf() -> str:
    """The host's pip index settings (config files and PIP_* variables), minus local file: paths."""
    listed = run([sys.executable, "-m", "pip", "config", "list"], timeout=60).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        urls = [v for v in value.strip().strip("'\"").split() if not v.startswith("file:")]
        if name in PIP_KEYS and urls:
            settings[name] = " ".join(urls)
    body = "".join(f"{k} = {v}\n" for k, v in settings.items())
    return f"[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n{body}"


def build_local_base(engine: Engine) -> str:
    """``docker import`` of the root file system, then the host's CA certificates and pip settings."""
    raw = f"{LOCAL}-rootfs"
    engine.check("import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
                 str(rootfs_tarball()), raw, timeout=300)
    with tempfile.TemporaryDirectory(prefix="lgw-base-") as tmp:
        context = Path(tmp)
        (context / "ca").mkdir()
        for cert in Path("/usr/local/share/ca-certificates").rglob("*.crt"):
            (context / "ca" / cert.name).write_bytes(cert.read_bytes())
        (context / "pip.conf").write_text(host_pip_conf())
        (context / "Dockerfile").write_text(
            f"FROM {raw}\n"
            "COPY ca/ /usr/local/share/ca-certificates/\n"
            "COPY pip.conf /etc/pip.conf\n"
            "RUN update-ca-certificates >/dev/null\n")
        engine.check("build", "-q", "-t", LOCAL, str(context), timeout=300)
    return LOCAL


def base_image(engine: Engine) -> tuple[str, str]:
    """(image, what it is): ``$LLM_GATEWAY_TEST_BASE_IMAGE``, the official image, or the local base."""
    wanted = os.environ.get("LLM_GATEWAY_TEST_BASE_IMAGE")
    if wanted:
        if engine.run("image", "inspect", wanted).returncode != 0:
            engine.check("pull", wanted, timeout=300)
        return wanted, f"{wanted} (LLM_GATEWAY_TEST_BASE_IMAGE)"
    try:
        pulled = engine.run("pull", OFFICIAL, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        pulled = False
    if pulled:
        return OFFICIAL, OFFICIAL
    return build_local_base(engine), f"{LOCAL} (debootstrap minbase + Debian python3; {OFFICIAL} unreachable)"
