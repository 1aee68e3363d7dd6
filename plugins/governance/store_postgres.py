"""Postgres for several machines, through asyncpg's connection pool.

The SQL is the SQLite store's, with ``?`` placeholders renumbered to ``$1..$n``. Migrations run
under an advisory lock, so replicas starting together apply each version once. A store that does
not answer within ``COMMAND_TIMEOUT_S`` fails the operation (the callers retry on their own beat).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from plugins.governance.migrations import migrations, statements
from plugins.governance.store import MANY, Step, Store, StoreError

COMMAND_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3.0
MIGRATION_LOCK = 0x6C6C6D67  # any constant; the same in every replica
_MARK = re.compile(r"\?")


def numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


def store_failure(exc: BaseException) -> StoreError:
    # asyncpg messages name the server's complaint, never the DSN or password.
    return StoreError(f"postgres store: {type(exc).__name__}: {exc}")


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None
        self._sql: dict[str, str] = {}

    async def open(self) -> None:
        try:
            pool = await asyncpg.create_pool(self._url, min_size=0, max_size=4, timeout=CONNECT_TIMEOUT_S,
                                             command_timeout=COMMAND_TIMEOUT_S)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise store_failure(exc) from None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, sql in migrations("postgres"):
                    if version not in done:
                        for statement in statements(sql):
                            await conn.execute(statement)
                        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, (OSError, asyncpg.PostgresError, TimeoutError)):
                raise store_failure(exc) from None
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _numbered(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = numbered(sql)
        return found

    async def run(self, steps: Sequence[Step]) -> list[tuple[Any, ...]]:
        if self._pool is None:
            raise StoreError("postgres store is not open")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                rows: list[Any] = []
                for sql, args in steps:
                    if sql.startswith(MANY):
                        await conn.executemany(self._numbered(sql[len(MANY):]), args)
                        rows = []
                    else:
                        rows = await conn.fetch(self._numbered(sql), *args)
                return [tuple(r) for r in rows]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise store_failure(exc) from None
