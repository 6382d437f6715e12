"""`aggregator migrate-store FROM TO`: copy a store into another (SQLite <-> PostgreSQL).

Both are opened as stores first (made, or upgraded to this program's schema), then the
rows are copied (aggregator.store.copy) from one snapshot of FROM into one transaction
of TO. Run again, it updates what changed and duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from aggregator.store import backend_name, open_store
from aggregator.store.copy import CopyReport, Progress, copy_rows, copy_side
from aggregator.store.interface import Storage


def migrate_store(source: str, target: str, progress: Progress | None = None) -> CopyReport:
    """Copy every row of the store at source into the store at target."""
    if backend_name(source) == backend_name(target):
        raise ValueError("copy between an SQLite file and a PostgreSQL database")
    for database in (source, target):
        open_store(database).close()
    with copy_side(source, write=False) as reader, copy_side(target, write=True) as writer:
        return copy_rows(reader, writer, progress)


def stores(source: str, target: str) -> Iterator[Storage]:
    """Both stores opened, for the caller to compare what they publish."""
    yield open_store(source)
    yield open_store(target)
