"""`aggregator migrate-store FROM TO`: copy a store into another (SQLite <-> PostgreSQL).

Both are opened as stores first (made, or upgraded to this program's schema), then the
rows are copied (aggregator.store.copy) from one snapshot of FROM into one transaction
of TO. Run again, it updates what changed and duplicates nothing. The slugs kept for
FROM's config go with it (config.loader.SlugShelf), so TO publishes at the same URLs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from aggregator.config.loader import SlugFile, SlugShelf, slugs_file
from aggregator.store import backend_name, open_store, slug_shelf
from aggregator.store.copy import CopyReport, Progress, copy_rows, copy_side
from aggregator.store.interface import Storage


def migrate_store(source: str, target: str, progress: Progress | None = None) -> CopyReport:
    """Copy every row of the store at source into the store at target."""
    if backend_name(source) == backend_name(target):
        raise ValueError("copy between an SQLite file and a PostgreSQL database")
    for database in (source, target):
        open_store(database).close()
    with copy_side(source, write=False) as reader, copy_side(target, write=True) as writer:
        report = copy_rows(reader, writer, progress)
    carry_slugs(_slug_shelf(source), _slug_shelf(target))
    return report


def carry_slugs(source: SlugShelf | None, target: SlugShelf | None) -> None:
    """Keep on target the slugs source keeps that it has not (a slug target keeps
    already stays: it may have been published)."""
    if source is None or target is None:
        return
    carried = target.read()
    for name, slug in source.read().known.items():
        if name not in carried.known:
            carried.known[name] = carried.added[name] = slug
    if carried.added:
        target.keep(carried)


def _slug_shelf(database: str) -> SlugShelf | None:
    if backend_name(database) == "sqlite":
        return SlugFile(slugs_file(Path(database)))
    return slug_shelf(database)


def stores(source: str, target: str) -> Iterator[Storage]:
    """Both stores opened, for the caller to compare what they publish."""
    yield open_store(source)
    yield open_store(target)
