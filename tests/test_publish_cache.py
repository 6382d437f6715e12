"""Publishing from cached entry fragments: the same bytes as rendering everything, and
never a stale entry (edits, new categories, source metadata, retention, config)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from aggregator.config.loader import load_config
from aggregator.models import Enclosure, ParsedFeed
from aggregator.publish.feedpages import shown_updated
from aggregator.publish.publisher import Publisher
from aggregator.store.retention import cleanup
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.migrations import MIGRATIONS
from tests import atomcheck, jsonfeedcheck, rsscheck
from tests.publishing import SOURCES, START, Site, cached_renders, record, served, site
from tests.test_publish import KEYS, fill

CHECKS = {"xml": atomcheck.problems, "json": jsonfeedcheck.problems, "rss": rsscheck.problems}


def uncached(publisher: Publisher) -> dict[str, bytes]:
    """Every document rendered the first way: views of whole articles, then each
    format's renderer of a whole document."""
    files: dict[str, bytes] = {}
    base = publisher.url_of("")
    for key in sorted(publisher.store.feed_keys()):
        info = publisher.info(key)
        paging = publisher.paging(key)
        for number in range(paging.archived + 1):
            for fmt, doc in publisher.page_documents(info, paging, number):
                files[doc.self_url.removeprefix(base)] = fmt.render(doc, publisher.config)
    return files


def feeds_only(files: dict[str, bytes]) -> dict[str, bytes]:
    return {n: d for n, d in files.items() if n.endswith((".xml", ".json", ".rss"))}


def elsewhere(s: Site, name: str) -> Publisher:
    """A publisher of the same store into another folder."""
    settings = replace(s.config.settings, output_dir=s.out.parent / name)
    return Publisher(replace(s.config, settings=settings), s.store)


def published(publisher: Publisher) -> dict[str, bytes]:
    out = publisher.output
    return served(out)


def varied(s: Site) -> None:
    """Entries with everything a fragment can hold, and a clash of shown times."""
    fill(s, 11)
    clash_time = START.replace(microsecond=0) + timedelta(hours=5)
    first = record(200, when=clash_time)
    s.add(
        "yaowen",
        record(
            100,
            summary="<b>摘要</b> & more",
            enclosures=(Enclosure("http://finews.example.cn/a.mp3", "audio/mpeg", 12345),),
            content='<p onclick="x()">正文\x0b</p><script>alert(1)</script> 😀',
            title="标题\x01 <b>&amp;</b> ]]>",
        ),
        first,
        # Shows, before being made distinct, the very time the first one shows.
        record(201, when=shown_updated(first.code, clash_time)),
    )


def test_cached_and_uncached_renders_are_byte_identical(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        varied(s)
        s.publisher.publish()  # cold: every fragment rendered now
        cold = feeds_only(s.files())
        assert cold == uncached(s.publisher)
        warm = elsewhere(s, "warm")
        warm.publish()  # warm: every fragment from the store
        assert feeds_only(published(warm)) == cold
        # Restarted with nothing cached, the same bytes again.
        s.store.clear_renders()
        again = elsewhere(s, "again")
        again.publish()
        assert feeds_only(published(again)) == cold
    for name, data in cold.items():
        check = CHECKS[name.rpartition(".")[2]]
        assert not check(data), name


def test_an_edited_entry_shows_its_new_content_after_an_incremental_publish(
    write_config: Any,
) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        fill(s, 6)
        s.publisher.publish()
        # An incremental publish first: the publisher keeps what it assembled (its
        # current documents' fragments), which the edit below must not bring back.
        s.publisher.publish(s.add("yaowen", record(7)))
        original = record(2)
        # Same share code and the same updated time, other words: the cache must notice.
        changed = s.add("yaowen", replace(original, content="<p>改过的正文</p>", title="新标题"))
        assert ("all", "") in changed
        s.publisher.publish(changed)
        files = s.files()
        assert files == {**files, **uncached(s.publisher)}
    for name in ("all.xml", "all.json", "source/yaowen.xml", "tag/sanqin-dushibao-xinwen.json"):
        text = files[name].decode()
        assert "改过的正文" in text and "新标题" in text, name
        assert "正文 2。" not in text, name


def test_an_entry_changed_by_other_means_is_rendered_again(write_config: Any) -> None:
    """A row rewritten without a new updated time (a repair, another tool) shows after
    `publish --rebuild`: such an edit leaves no mark for the publish record to see."""
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.publisher.publish()
        with s.store.transaction() as db:
            fixed = "UPDATE entries SET content = '<p>修复后</p>' WHERE code = ?"
            db.execute(fixed, [record(1).code])
        s.publisher.publish(rebuild=True)
        files = s.files()
        assert files == {**files, **uncached(s.publisher)}
    assert "修复后" in files["all.xml"].decode()


def test_an_entry_gaining_a_category_shows_it(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.publisher.publish()
        assert "shanxi-jiaotong" not in s.files()["all.xml"].decode()
        # The other source carries it too: its category and tags join the entry.
        changed = s.add("jiaotong", record(1))
        s.publisher.publish(changed)
        files = s.files()
        assert files == {**files, **uncached(s.publisher)}
    assert 'term="shanxi-jiaotong"' in files["all.xml"].decode()
    assert "陕西交通" in files["source/yaowen.json"].decode()


def test_new_source_metadata_reaches_cached_entries(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.publisher.publish()
        source = s.config.source("yaowen")
        assert source is not None
        renamed = ParsedFeed("rss20", "要闻（新名）", "http://finews.example.cn/new/", "", ())
        s.store.ingest(source, renamed, [], s.now)
        s.publisher.publish()
        files = s.files()
        assert files == {**files, **uncached(s.publisher)}
    assert files["all.xml"].decode().count("要闻（新名）") == 2


def test_a_config_change_rerenders_cached_entries(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1))
        s.publisher.publish()
        moved = load_config(write_config(SOURCES, base_url="http://elsewhere.example.org"))
        publisher = Publisher(moved, s.store)
        publisher.publish()
        files = published(publisher)
        assert feeds_only(files) == uncached(publisher)
    assert 'scheme="http://elsewhere.example.org/category/"' in files["all.xml"].decode()


def test_retained_entries_disappear_and_leave_no_fragments(write_config: Any) -> None:
    with site(write_config, retain_entries=2) as s:
        fill(s, 8, batch=8)
        s.publisher.publish()
        result = cleanup(s.store, s.config, s.now)
        assert result.removed
        s.publisher.publish(result.changed_feeds)
        files = s.files()
        assert files == {**files, **uncached(s.publisher)}
        names = {f.name for f in s.publisher.formats}
        assert [set(r) for r in cached_renders(s.store).values()] == [names] * (
            s.store.entry_count()
        )
    for code in result.removed:
        assert code not in files["all.xml"].decode()
        assert code not in files["all.json"].decode()


MEMBERSHIPS = ("entry_sources", "entry_categories", "entry_tags")


# Fragments as schemas before 16 kept them, made up from a database of the current
# schema, `db` (migration 16 drops them): before 15 one row per entry and a column per
# format, then one row per entry and format.
OLD_RENDERS = {
    "entry_renders": """SELECT code, 'old', updated, CAST('<entry/>' AS BLOB) AS atom,
        CAST('{{}}' AS BLOB) AS json FROM {db}entries""",
    "entry_fragments": """SELECT code, 'atom', 'old', updated, CAST('<entry/>' AS BLOB)
        FROM {db}entries""",
}


def as_of_schema(version: int, database: Path, old: Path, tables: Sequence[str]) -> None:
    """A database at an older schema version holding the rows of `tables` copied
    from `database` (a current one), for the migrations after it to upgrade."""
    conn = sqlite3.connect(old, isolation_level=None)
    for migration in MIGRATIONS[:version]:
        migration(sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute(f"ATTACH DATABASE '{database}' AS new")
    for table in tables:
        columns = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
        names = ", ".join(columns)
        made_up = OLD_RENDERS.get(table)
        rows = made_up.format(db="new.") if made_up else f"SELECT {names} FROM new.{table}"
        conn.execute(f"INSERT INTO main.{table} ({names}) {rows}")
    conn.execute("DETACH DATABASE new")
    conn.close()


def test_migration_queues_entries_stored_before_it(tmp_path: Path, write_config: Any) -> None:
    """A store from before migration 6 (entries, no positions yet) publishes every entry."""
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.add("jiaotong", record(3))
        expected = uncached(s.publisher)
        database = s.store.database
    old = tmp_path / "old.db"
    as_of_schema(5, database, old, ("sources", "entries", *MEMBERSHIPS))
    config = load_config(write_config(SOURCES, database=str(old)))
    with SqliteStore(old) as store:
        publisher = Publisher(config, store)
        publisher.publish()
        files = feeds_only(published(publisher))
    assert set(files) == set(expected)
    for key in KEYS:
        info = publisher.info(key)
        for fmt in publisher.formats:
            name = info.file(fmt.suffix)
            assert files[name] == expected[name]


ROWS = {
    "entries": "SELECT * FROM entries",
    # Its columns as of migration 9 (migration 10 adds a fingerprint).
    "entry_sources": """SELECT code, source_id, guid, entry_hash, first_seen, last_seen,
        raw_digest FROM entry_sources""",
    "entry_categories": "SELECT * FROM entry_categories",
    "entry_tags": "SELECT * FROM entry_tags",
    "feed_pending": "SELECT * FROM feed_pending",
    "feed_positions": "SELECT * FROM feed_positions",
    "entry_renders": "SELECT * FROM entry_renders",
}


def test_migration_9_keeps_every_row_and_the_published_bytes(
    tmp_path: Path, write_config: Any
) -> None:
    """The membership tables and the queue are rebuilt without rowids (and the queue
    without its foreign key): every row survives, queued members are still numbered,
    and the feeds come out the same (the fragments cached then are dropped by 16)."""
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.publisher.publish()  # positions and rendered fragments
        s.add("jiaotong", record(3), record(2))  # queued, not yet numbered
        database = s.store.database
    old = tmp_path / "v8.db"
    as_of_schema(8, database, old, ("sources", *ROWS))
    with sqlite3.connect(old) as conn:
        before = {t: sorted(conn.execute(q)) for t, q in ROWS.items()}
        columns = {t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")] for t in ROWS}
    assert before["feed_pending"] and before["entry_renders"]

    def publish(store: SqliteStore, output: Path) -> dict[str, bytes]:
        config = load_config(write_config(SOURCES, database=store.database, output_dir=str(output)))
        publisher = Publisher(config, store)
        publisher.publish()
        return feeds_only(published(publisher))

    with SqliteStore(database) as store:
        expected = publish(store, tmp_path / "out8")
    with SqliteStore(old) as store:
        # (as of schema 8's columns: later migrations add some)
        after = {t: f"SELECT {', '.join(names)} FROM {t}" for t, names in columns.items()}
        del after["entry_renders"], before["entry_renders"]
        assert {t: sorted(store.db.execute(q)) for t, q in after.items()} == before
        assert cached_renders(store) == {}
        ddl = dict(store.db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        for table in ("entry_sources", "entry_categories", "entry_tags", "feed_pending"):
            assert ddl[table].rstrip().endswith("WITHOUT ROWID"), table
        assert "REFERENCES" not in ddl["feed_pending"]
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert publish(store, tmp_path / "out9") == expected
        assert len(expected) > 4
        # The category and tag tables kept their trigger: losing one drops the fragments.
        code = record(1).code
        with store.transaction() as db:
            db.execute("DELETE FROM entry_tags WHERE code = ?", [code])
        assert code not in cached_renders(store) and cached_renders(store)


def test_migration_16_drops_the_fragments_that_hold_the_html(
    tmp_path: Path, write_config: Any
) -> None:
    """A store whose fragments hold the article's HTML, a row per entry and format,
    loses them: the next publish writes the same bytes, caches every format of an
    entry in one row, and a change to the entry or its tags still drops it."""
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.add("jiaotong", record(3))
        s.publisher.publish()
        database = s.store.path
    old = tmp_path / "v15.db"
    tables = ("sources", "entries", *MEMBERSHIPS, "feed_positions", "entry_fragments")
    as_of_schema(15, database, old, tables)

    def publish(store: SqliteStore, output: Path) -> dict[str, bytes]:
        config = load_config(
            write_config(SOURCES, database=str(store.path), output_dir=str(output))
        )
        publisher = Publisher(config, store)
        publisher.publish()
        return feeds_only(published(publisher))

    with SqliteStore(database) as store:
        expected = publish(store, tmp_path / "expected")
    with SqliteStore(old) as store:
        tables = {row[0] for row in store.db.execute("SELECT name FROM sqlite_master")}
        assert "entry_fragments" not in tables and cached_renders(store) == {}
        assert publish(store, tmp_path / "upgraded") == expected
        cached = cached_renders(store)
        assert [set(r) for r in cached.values()] == [{"atom", "json", "rss"}] * 3
        with store.transaction() as db:  # the triggers moved with the fragments
            db.execute("UPDATE entries SET title = 'x' WHERE code = ?", [record(1).code])
            db.execute("DELETE FROM entry_tags WHERE code = ?", [record(3).code])
        assert set(cached_renders(store)) == {record(2).code}
