"""SQLite during bulk writes (a large first poll): a thread of its own copies the WAL
into the database as the writes go on, and is gone when they end."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.config.loader import Source
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.connection import Checkpointer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEWS = Source("news", "News", "http://a.example/feed.xml", "要闻")


def store_some(store: SqliteStore, first: int, count: int) -> None:
    feed = ParsedFeed("rss20", "News", NEWS.url, "")
    entries = [
        EntryRecord(f"g{n}", f"第{n}条", f"http://a.example/{n}", T0, T0, code=f"NW{n:06d}")
        for n in range(first, first + count)
    ]
    store.ingest(NEWS, feed, entries, T0)


def checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wal-checkpointer"]


def test_the_checkpointer_copies_committed_transactions_into_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.db"
    with SqliteStore(path) as store:
        store.sync_sources([NEWS])
        store_some(store, 1, 50)
        checkpointer = Checkpointer(path, every=0.01)
        checkpointer.start()
        try:
            assert checkpointer.wait_for_passes(1, timeout=30)
        finally:
            checkpointer.stop()
        assert checkpointer.last is not None
        busy, frames, copied = checkpointer.last
        assert busy == 0 and frames > 0 and copied == frames  # every committed frame
    assert not checkpointers()


def test_bulk_writes_stop_their_checkpointer_however_they_end(tmp_path: Path) -> None:
    path = tmp_path / "bulk.db"
    with SqliteStore(path) as store:
        store.sync_sources([NEWS])
        with store.bulk_writes():
            assert len(checkpointers()) == 1
            store_some(store, 1, 20)
        assert not checkpointers()
        with pytest.raises(RuntimeError), store.bulk_writes():
            store_some(store, 21, 20)
            raise RuntimeError("a worker failed")
        assert not checkpointers()
    with SqliteStore(path) as again:
        assert again.entry_count() == 40


def test_a_checkpointer_on_a_database_it_cannot_open_just_ends(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "missing" / "folder.db", every=0.01)
    checkpointer.start()
    checkpointer.stop()
    assert checkpointer.passes == 0
    assert not checkpointers()
