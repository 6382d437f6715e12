"""A new database made from the current DDL (schema.py) and an old one upgraded through
every migration end with the same schema."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import sqlite_utils

from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION


def normalised(sql: str | None) -> str:
    """The statement without comments, quotes around names or layout."""
    text = re.sub(r"--[^\n]*", "", sql or "").replace('"', "")
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s*([(),;])\s*", r"\1", text).strip()


def schema_of(path: Path) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {(kind, name): normalised(sql) for kind, name, sql in rows}


def contents(path: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
    finally:
        conn.close()


def test_a_new_database_is_made_from_the_ddl_at_the_current_version(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "new.db") as store:
        assert store.schema_version == SCHEMA_VERSION


def test_the_ddl_and_the_migrations_make_the_same_schema(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    db = sqlite_utils.Database(sqlite3.connect(migrated, isolation_level=None))
    for migration in MIGRATIONS:  # from nothing, as every version before made one
        migration(db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.close()
    with SqliteStore(migrated) as store:
        assert store.schema_version == SCHEMA_VERSION
    with SqliteStore(tmp_path / "new.db"):
        pass
    assert schema_of(tmp_path / "new.db") == schema_of(migrated)
    assert contents(tmp_path / "new.db", "store_versions") == contents(migrated, "store_versions")


def test_an_old_database_upgraded_step_by_step_has_the_current_schema(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(old, isolation_level=None))
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.close()
    with SqliteStore(old) as store:
        assert store.schema_version == SCHEMA_VERSION
    with SqliteStore(tmp_path / "new.db"):
        pass
    assert schema_of(tmp_path / "new.db") == schema_of(old)
