"""The SQLite backend: WAL mode, the schema at its current version (schema.py) or
upgraded to it (migrations.py), and every write in one ``BEGIN IMMEDIATE`` transaction,
so a kill -9 at any moment leaves either the whole poll or none of it. Upgrades and the
publishing, retention and status writes go through sqlite-utils; a poll (a new
database's schema, its entries, its state) through the plain sqlite3 connection, so it
never waits for sqlite-utils to load. The only package that imports sqlite3."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from aggregator.store.sqlite.connection import storage_errors
from aggregator.store.sqlite.copy import copy_side
from aggregator.store.sqlite.ingest import Ingest
from aggregator.store.sqlite.publishing import Publishing
from aggregator.store.sqlite.retention import Retention
from aggregator.store.sqlite.rows import chunks
from aggregator.store.sqlite.sources import Sources
from aggregator.store.sqlite.status import Status


@storage_errors
class SqliteStore(Sources, Ingest, Publishing, Retention, Status):
    """The storage interface (aggregator.store.interface.Storage) on one SQLite file."""

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_storage(database: str | Path, *, timeout: float = 30.0) -> SqliteStore:
    """The store on this SQLite file, made or upgraded to the current schema."""
    return SqliteStore(database, timeout=timeout)


def carriers_of(database: str | Path, codes: Sequence[str]) -> dict[str, list[str]]:
    """The sources storing each of these codes in a database, read without writing or
    migrating anything (`sources check`): {} where there is no database (yet) or it
    cannot be read."""
    path = Path(database)
    if not codes or not path.exists():
        return {}
    found: dict[str, list[str]] = {}
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        for chunk, marks in chunks(list(dict.fromkeys(codes))):
            rows = conn.execute(
                f"""SELECT code, source_id FROM entry_sources WHERE code IN ({marks})
                    ORDER BY code, source_id""",
                chunk,
            )
            for code, source_id in rows:
                found.setdefault(code, []).append(source_id)
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    return found


__all__ = ["SqliteStore", "carriers_of", "copy_side", "open_storage"]
