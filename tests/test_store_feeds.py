"""SqliteStore.articles picks the same newest entries whichever query plan a feed gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from aggregator.config.loader import Source
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.run.poll import parse_and_store
from aggregator.store.records import from_iso, iso
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.publishing import feeds_holding
from bench.corpus import Corpus


def test_big_and_small_feeds_list_their_newest_entries(tmp_path: Path) -> None:
    corpus = Corpus(60, 20, seed=9, duplicates=0.1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with SqliteStore(tmp_path / "s.db") as store:
        sources = [
            Source(
                f"s{feed.index}",
                f"s{feed.index}",
                f"http://x/{feed.index}.xml",
                "大" if feed.index else "小",  # one small category, one big (> 1000 entries)
                tags=("标签",),
                share_code=ShareCodeRule("param", "infoCode"),
            )
            for feed in corpus.feeds
        ]
        store.sync_sources(sources)
        for source, feed in zip(sources, corpus.feeds, strict=True):
            parse_and_store(source, store, corpus.render(feed), source.url, "", now)
        rows = store.db.execute(
            """SELECT e.code, e.published, c.name, es.source_id FROM entries e
               JOIN entry_categories c ON c.code = e.code
               JOIN entry_sources es ON es.code = e.code"""
        ).fetchall()
        for key in [("category", "大"), ("category", "小"), ("tag", "标签"), ("source", "s7")]:
            kind, name = key
            members = {
                (published, code)
                for code, published, category, source_id in rows
                if (kind == "category" and category == name)
                or (kind == "source" and source_id == name)
                or kind == "tag"
            }
            expected = [code for _, code in sorted(members, key=lambda m: (_neg(m[0]), m[1]))]
            assert [a.code for a in store.articles(key, 50)] == expected[:50], key


def _neg(published: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in published)


def test_stored_times_read_back_exactly() -> None:
    value = datetime(2021, 12, 24, 3, 0, 26, 1234, tzinfo=UTC)
    assert from_iso(iso(value)) == value
    assert from_iso(iso(value)).tzinfo is UTC  # type: ignore[union-attr]
    assert from_iso("") is None
    # The same fixed-width UTC text whatever the offset it came with.
    beijing = value.astimezone(timezone(timedelta(hours=8)))
    whole_second = value.replace(microsecond=0)
    assert iso(value) == iso(beijing) == "2021-12-24T03:00:26.001234Z"
    assert iso(whole_second) == "2021-12-24T03:00:26.000000Z"


def test_a_new_entry_is_reported_in_exactly_the_feeds_it_joined(tmp_path: Path) -> None:
    """feeds_of_new (computed, no query) names the feeds the store put a new entry in,
    rules' extra categories and tags included."""
    from aggregator.models import EntryRecord, ParsedFeed
    from aggregator.store.records import feeds_of_new

    source = Source("s1", "s1", "http://x/1.xml", "三秦都市报", tags=("三秦都市报新闻", "西安"))
    entry = EntryRecord(
        "g1",
        "西安地铁",
        "http://x/a",
        code="NW1",
        code_rule="guid",
        extra_categories=("交通",),
        extra_tags=("地铁",),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with SqliteStore(tmp_path / "s.db") as store:
        store.sync_sources([source])
        result = store.ingest(source, ParsedFeed("rss20", "t", "", ""), [entry], now)
        with store.transaction() as db:
            stored = feeds_holding(db.conn, ["NW1"])
    assert result.changed_feeds == feeds_of_new(source, entry) == stored
