"""The PostgreSQL side of `aggregator migrate-store` (aggregator.store.copy)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from aggregator.errors import StoreError
from aggregator.store.copy import CHUNK, upsert_sql
from aggregator.store.postgres.store import connect, redacted


class PostgresSide:
    """A PostgreSQL store, in one transaction: a read snapshot, or the write."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def count(self, table: str) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def columns(self, table: str) -> list[str]:
        cursor = self.conn.execute(f"SELECT * FROM {table} LIMIT 0")
        return [column.name for column in cursor.description or ()]

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        with self.conn.cursor(name=f"copy_{table}") as cursor:  # server-side: streamed
            cursor.execute(f"SELECT {', '.join(columns)} FROM {table}")
            while chunk := cursor.fetchmany(CHUNK):
                yield [_plain(row) for row in chunk]

    def upsert(
        self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(upsert_sql(table, columns, key, "%s"), rows)

    def versions(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT what, version FROM store_versions").fetchall()
        return {what: int(version) for what, version in rows}

    def counters_past(self, versions: dict[str, int]) -> None:
        """Every version past both stores'; the marks' sequence past every mark copied."""
        for what, version in versions.items():
            self.conn.execute(
                "UPDATE store_versions SET version = greatest(version, %s) + 1 WHERE what = %s",
                [version, what],
            )
        self.conn.execute(
            """SELECT setval('unpublished_marks', greatest(
                 (SELECT coalesce(max(mark), 0) FROM feed_unpublished),
                 %s, (SELECT last_value FROM unpublished_marks)) + 1)""",
            [versions.get("unpublished", 0)],
        )


def _plain(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row as sqlite3 takes it (bytea arrives as memoryview)."""
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


@contextmanager
def copy_side(database: str | Path, *, write: bool) -> Iterator[PostgresSide]:
    url = str(database)
    conn = connect(url)
    try:
        try:
            with conn.transaction():
                if not write:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield PostgresSide(conn)
        except psycopg.Error as exc:
            raise StoreError(f"copying {redacted(url)}: {exc}") from None
    finally:
        conn.close()
