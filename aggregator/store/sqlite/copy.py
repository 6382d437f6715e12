"""The SQLite side of `aggregator migrate-store` (aggregator.store.copy)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aggregator.errors import StoreError
from aggregator.store.copy import CHUNK, upsert_sql


class SqliteSide:
    """An SQLite store file, in one transaction: a read snapshot, or the write."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")]

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        cursor = self.conn.execute(f"SELECT {', '.join(columns)} FROM {table}")
        while chunk := cursor.fetchmany(CHUNK):
            yield [tuple(row) for row in chunk]

    def upsert(
        self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        self.conn.executemany(upsert_sql(table, columns, key, "?"), rows)

    def versions(self) -> dict[str, int]:
        return {w: int(v) for w, v in self.conn.execute("SELECT what, version FROM store_versions")}

    def counters_past(self, versions: dict[str, int]) -> None:
        """Every version past both stores' (caches read again); 'unpublished' (the
        SQLite store's next mark) past every mark copied."""
        (marks,) = self.conn.execute(
            "SELECT coalesce(max(mark), 0) FROM feed_unpublished"
        ).fetchone()
        for what, version in versions.items():
            self.conn.execute(
                """UPDATE store_versions SET version = max(version, ?, ?) + 1 WHERE what = ?""",
                [version, marks if what == "unpublished" else 0, what],
            )


@contextmanager
def copy_side(database: str | Path, *, write: bool) -> Iterator[SqliteSide]:
    path = Path(database)
    try:
        if write:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        else:
            conn = sqlite3.connect(
                path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0, isolation_level=None
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield SqliteSide(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"copying {path}: {exc}") from None
    finally:
        conn.close()
