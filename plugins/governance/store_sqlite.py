"""The embedded store: one SQLite file, in WAL mode so several processes on one machine
(``--workers N``, several ``serve``) share it, readers never blocked by the writer.

All I/O runs in this store's own thread (one connection), never on the event loop. A writer that
finds the file locked waits up to ``BUSY_TIMEOUT_MS`` in that thread, then fails the operation.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from plugins.governance.migrations import migrations, statements
from plugins.governance.store import MANY, Step, Store, StoreError

BUSY_TIMEOUT_MS = 2000


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``."""
    return Path(urlsplit(url).path[1:])


class SQLiteStore(Store):
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-gateway-store")
        self._db: sqlite3.Connection | None = None

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store: {exc}") from None

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        if self._db is not None:  # an earlier open finished after its caller stopped waiting
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find it done
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                       "applied_at REAL NOT NULL DEFAULT (unixepoch('now')))")
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for version, sql in migrations("sqlite"):
                if version not in done:
                    for statement in statements(sql):
                        db.execute(statement)
                    db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # an error may have rolled it back already
                db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def run(self, steps: Sequence[Step]) -> list[tuple[Any, ...]]:
        if self._db is None:
            raise StoreError("sqlite store is not open")
        return await self._call(self._run, steps)

    def _run(self, steps: Sequence[Step]) -> list[tuple[Any, ...]]:
        db = self._db
        assert db is not None
        rows: list[tuple[Any, ...]] = []
        db.execute("BEGIN IMMEDIATE" if any(not s[0].startswith("SELECT") for s in steps) else "BEGIN")
        try:
            for sql, args in steps:
                if sql.startswith(MANY):
                    db.executemany(sql[len(MANY):], args)
                    rows = []
                else:
                    rows = db.execute(sql, args).fetchall()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # an error may have rolled it back already
                db.execute("ROLLBACK")
            raise
        return rows
