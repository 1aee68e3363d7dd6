"""A real PostgreSQL server for tests: ``initdb`` into a temporary directory, ``postgres`` on a
free loopback port, stopped by PID. Postgres refuses to run as root, so as root (CI) it runs as
the ``postgres`` system user (made by the Debian package; else ``nobody``) through ``setpriv``."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.services import require_binary
from tests.support import free_port


def postgres_bin(name: str) -> str:
    """``initdb``/``postgres`` from PATH or Debian's versioned directory (not on PATH there)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    return found or require_binary(name)


def run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            return [require_binary("setpriv"), f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                    "--clear-groups", "--"]
    pytest.fail("running as root and neither a 'postgres' nor a 'nobody' user exists")


def owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            return entry.pw_uid, entry.pw_gid
    return None


_numbers = itertools.count(1)


@dataclass
class PostgresServer:
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://gateway@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        data = self.workdir / "data"
        subprocess.run([*run_as(), postgres_bin("initdb"), "-D", str(data), "-U", "gateway", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*run_as(), postgres_bin("postgres"), "-D", str(self.workdir / "data"), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.workdir), "-F", "-c", "max_connections=40"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.accepting():
                time.sleep(0.2)  # the port opens just before recovery ends
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("postgres did not listen within 30 s")

    def accepting(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            return True
        return False

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        name = f"t{next(_numbers)}"
        # Its own thread and loop: this may be called while a test's event loop runs.
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(lambda: asyncio.run(self._execute(f"CREATE DATABASE {name}"))).result()
        return f"postgresql://gateway@127.0.0.1:{self.port}/{name}"

    async def _execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are ended, the server exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    postgres_bin("initdb")
    with tempfile.TemporaryDirectory(prefix="llm-gateway-pg-") as tmp:
        workdir = Path(tmp)
        ids = owner()
        if ids is not None:
            os.chmod(workdir, 0o755)
            os.chown(workdir, *ids)
        server = PostgresServer(workdir, free_port())
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
