"""The database's page size: 16 KB for a new one, whatever it had for an old one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from aggregator.config.loader import Source
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.run.poll import parse_and_store
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.connection import PAGE_SIZE
from bench.corpus import Corpus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def store_a_feed(store: SqliteStore) -> int:
    corpus = Corpus(1, 20, seed=3, duplicates=0)
    feed = corpus.feeds[0]
    source = Source("s", "s", "http://x/s.xml", "类", share_code=ShareCodeRule("param", "infoCode"))
    store.sync_sources([source])
    _, result = parse_and_store(source, store, corpus.render(feed), source.url, "", NOW)
    return result.new


def test_a_new_database_has_16_kb_pages_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with SqliteStore(path) as store:
        assert store_a_feed(store) == 20
    assert PAGE_SIZE == 16 * 1024
    assert page_size(path) == PAGE_SIZE
    with SqliteStore(path) as store:  # opened again: still the same file, same pages
        assert store.db.execute("SELECT count(*) FROM entries").fetchone()[0] == 20
    assert page_size(path) == PAGE_SIZE


def test_a_database_made_with_4_kb_pages_keeps_them_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # as SQLite makes one by default, in WAL mode
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE made_before (x)")
    with SqliteStore(path) as store:
        assert store_a_feed(store) == 20
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert page_size(path) == 4096
