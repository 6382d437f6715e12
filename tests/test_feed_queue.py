"""Every way an entry joins a feed queues it for a position (publishing.queue_members), so
every member of every feed ends up numbered, once, in the order it joined."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from aggregator.models import ParsedFeed
from aggregator.store.records import FeedKey, PollRecord, StoredArticle
from aggregator.store.sqlite import SqliteStore
from tests.publishing import START, Site, cached_renders, record, site

MEMBERS = {
    "all": "SELECT '' AS name, code FROM entries",
    "category": "SELECT name, code FROM entry_categories",
    "tag": "SELECT name, code FROM entry_tags",
    "source": "SELECT source_id AS name, code FROM entry_sources",
}


def members(store: SqliteStore) -> set[tuple[str, str, str]]:
    found = set()
    for kind, query in MEMBERS.items():
        found |= {(kind, name, code) for name, code in store.db.execute(query).fetchall()}
    return found


def positioned(s: Site) -> set[tuple[str, str, str]]:
    """Positions after numbering every feed, checked to run 0..n-1 in each feed."""
    for key in s.store.feed_keys():
        s.store.position_feed(key)
    rows = s.store.db.execute("SELECT kind, name, code, seq FROM feed_positions").fetchall()
    by_feed: dict[FeedKey, list[int]] = {}
    for kind, name, _code, seq in rows:
        by_feed.setdefault((kind, name), []).append(seq)
    assert all(sorted(seqs) == list(range(len(seqs))) for seqs in by_feed.values())
    return {(kind, name, code) for kind, name, code, _seq in rows}


def test_every_way_of_joining_a_feed_gets_a_position(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))  # new entries
        assert positioned(s) == members(s.store)
        s.add("jiaotong", record(2), record(3))  # a second source: its feeds gain #2
        assert ("category", "陕西交通", record(2).code) in members(s.store)
        assert positioned(s) == members(s.store)
        s.add("yaowen", replace(record(1), title="改过的标题", updated=START + timedelta(days=1)))
        s.add("jiaotong", record(2))  # nothing new: queues nothing that lacks a position
        assert positioned(s) == members(s.store)
        imported, _ = s.store.import_articles(
            [
                StoredArticle(
                    code="NW-imported",
                    title="旧文",
                    link="http://finews.example.cn/old",
                    published=START,
                    updated=START,
                    author="",
                    summary="",
                    content="<p>旧</p>",
                    categories=("三秦都市报",),
                    enclosures=(),
                    source_id="yaowen",
                    tags=("三秦都市报新闻",),
                    entry_categories=("三秦都市报",),
                )
            ],
            s.now,
        )
        assert imported == 1
        assert positioned(s) == members(s.store)
        assert ("tag", "三秦都市报新闻", "NW-imported") in members(s.store)
        # Numbering is done: the queue is empty, and positions never move.
        assert s.store.db.execute("SELECT count(*) FROM feed_pending").fetchone()[0] == 0


def test_a_stored_entry_gaining_a_tag_drops_its_rendered_fragments(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1))
        s.publisher.publish()
        formats = {f.name for f in s.publisher.formats}  # one fragment in each
        assert set(cached_renders(s.store)[record(1).code]) == formats
        s.add("yaowen", record(1))  # the same again: the fragments stay
        assert set(cached_renders(s.store)[record(1).code]) == formats
        s.add("jiaotong", record(1))  # gains the tag 交通 and a category
        assert record(1).code not in cached_renders(s.store)


def all_feed_keys(store: SqliteStore) -> set[FeedKey]:
    """Every feed with a member, read from the membership tables themselves."""
    return {("all", "")} | {(kind, name) for kind, name, _code in members(store)}


def test_feed_keys_kept_between_publishes_follow_every_writer(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1))
        s.publisher.publish()
        assert s.store.feed_keys() == all_feed_keys(s.store)
        # Another connection (a command beside the daemon, say) adds feeds: seen while
        # they are queued, and after that connection has numbered their members.
        with SqliteStore(s.config.settings.database) as other:
            other.ingest(
                s.config.sources[1],
                ParsedFeed("rss20", "交通", "", "", (record(2),)),
                [record(2)],
                s.now,
            )
            assert ("tag", "交通") in s.store.feed_keys() == all_feed_keys(s.store)
            for key in other.feed_keys():
                other.position_feed(key)
            assert s.store.db.execute("SELECT count(*) FROM feed_pending").fetchone()[0] == 0
            assert ("tag", "交通") in s.store.feed_keys() == all_feed_keys(s.store)
            # A feed goes with its last entry.
            with other.transaction() as db:
                db.execute("DELETE FROM entries WHERE code = ?", [record(2).code])
        assert ("tag", "交通") not in s.store.feed_keys() == all_feed_keys(s.store)


def test_an_entry_removed_while_queued_is_passed_over(write_config: Any) -> None:
    """The queue has no foreign key: a member whose entry went before its feed was
    numbered names no feed and never gets a position."""
    with site(write_config) as s:
        s.add("yaowen", record(1))
        s.add("jiaotong", record(2))  # alone in the tag 交通, still queued
        with s.store.transaction() as db:
            db.execute("DELETE FROM entries WHERE code = ?", [record(2).code])
        assert ("tag", "交通") not in s.store.feed_keys() == all_feed_keys(s.store)
        assert positioned(s) == members(s.store)
        assert record(2).code not in {code for _kind, _name, code in positioned(s)}
        # What is left in the queue is the removed entry's, naming no feed (retention
        # drops such rows as it removes entries: see test_retention).
        queued = s.store.db.execute("SELECT DISTINCT code FROM feed_pending").fetchall()
        assert queued == [(record(2).code,)]


def test_source_metadata_is_read_again_only_when_it_changes(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1))
        meta = s.store.version("source_meta")
        s.add("yaowen", record(2))  # the same feed title: nothing shown changed
        s.store.record_poll("yaowen", PollRecord(etag='"v2"', last_http_status=200))
        assert s.store.version("source_meta") == meta
        s.publisher.publish()
        before = (s.out / "all.xml").read_bytes()
        renamed = ParsedFeed("rss20", "改名的要闻", "", "", (record(3),))
        changed = s.store.ingest(s.config.sources[0], renamed, [record(3)], s.now).changed_feeds
        assert s.store.version("source_meta") == meta + 1
        s.publisher.publish(changed)
        after = (s.out / "all.xml").read_bytes()
        assert "改名的要闻".encode() in after and "改名的要闻".encode() not in before
