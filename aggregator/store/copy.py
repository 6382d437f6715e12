"""Copy a store's rows into another store of the other kind (SQLite <-> PostgreSQL).

Both schemas have the same tables and columns (aggregator.store.postgres.schema), so a
copy is table by table, parents first, each row upserted by its primary key: run again,
it updates what changed and duplicates nothing. The source is read in one snapshot and
the target written in one transaction (all or nothing). Counters that must stay ahead
of what was copied (versions, marks) are moved past it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

# Every copied table with its primary key, parents before children (foreign keys).
TABLES: dict[str, tuple[str, ...]] = {
    "sources": ("id",),
    "entries": ("code",),
    "entry_sources": ("code", "source_id"),
    "entry_categories": ("code", "name"),
    "entry_tags": ("code", "name"),
    "feed_positions": ("kind", "name", "code"),
    "feed_pending": ("kind", "name", "code"),
    "feed_unpublished": ("kind", "name"),
    "feed_holes": ("kind", "name", "seq"),
    "rendered_entries": ("code",),
    "tombstones": ("code",),
    "poll_days": ("source_id", "day"),
    "legacy_codes": ("code", "source_id"),
}
CHUNK = 1000

Progress = Callable[[str, int, int], None]  # (table, rows copied, rows in all)


class Side(Protocol):
    """One store's tables, read or written row by row."""

    def count(self, table: str) -> int: ...

    def columns(self, table: str) -> list[str]: ...

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]: ...

    def upsert(
        self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None: ...

    def counters_past(self, versions: dict[str, int]) -> None: ...

    def versions(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class CopyReport:
    counts: dict[str, tuple[int, int]]  # table: (rows in the source, rows in the target)

    @property
    def mismatched(self) -> list[str]:
        return [table for table, (a, b) in self.counts.items() if a != b]


def copy_rows(source: Side, target: Side, progress: Progress | None = None) -> CopyReport:
    """Upsert every row of every table of source into target; returns both sides'
    row counts afterwards."""
    for table, key in TABLES.items():
        total = source.count(table)
        columns = source.columns(table)
        done = 0
        if progress:
            progress(table, 0, total)
        for chunk in source.rows(table, columns):
            target.upsert(table, columns, key, chunk)
            done += len(chunk)
            if progress:
                progress(table, done, total)
    target.counters_past(source.versions())
    return CopyReport({table: (source.count(table), target.count(table)) for table in TABLES})


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str], mark: str) -> str:
    names = ", ".join(columns)
    values = ", ".join(mark for _ in columns)
    others = [c for c in columns if c not in key]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others)
        if others
        else "DO NOTHING"
    )
    return (
        f"INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT ({', '.join(key)}) {action}"
    )


def copy_side(database: str | Path, *, write: bool) -> AbstractContextManager[Side]:
    """The store at `database` as one side of a copy: a read snapshot, or the write
    (one transaction), by its backend."""
    from aggregator.store import _backend

    module = importlib.import_module(_backend(database))
    return cast(AbstractContextManager[Side], module.copy_side(database, write=write))
