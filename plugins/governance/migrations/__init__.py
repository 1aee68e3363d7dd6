"""Versioned schema migrations, one directory per store dialect: ``<dialect>/NNNN_name.sql``.

Each store applies the files whose number is above the highest in its ``schema_migrations``
table, in order, each in its own transaction, and records them there. Files are never edited once
released: a change is a new file.
"""

from __future__ import annotations

from importlib import resources


def migrations(dialect: str) -> list[tuple[int, str]]:
    """``[(version, sql), ...]`` in version order."""
    found = []
    for entry in resources.files(__package__).joinpath(dialect).iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def statements(sql: str) -> list[str]:
    """A migration file split into statements (comment lines dropped; the files hold no ';'
    inside a statement)."""
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]
