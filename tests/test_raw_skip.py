"""A changed feed costs about its changed entries: stored entries are recognised by the
digest of their raw XML and left out before any parsing, sanitizing or storing work.

Real HTTP server, real SQLite, real parse path; what is skipped is read off the
parsed feed (ParsedFeed.skipped) and the poll outcome, and what is stored is read
back from the database, so skipping never changes the result.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.config.loader import Rule, Source
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from aggregator.models import EntryRecord
from aggregator.run.poll import KnownEntries, extract, poll_source, salted, source_salt
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.feeds import Item, atom, rss
from tests.feedserver import FeedServer

SEEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def items(count: int) -> list[Item]:
    return [
        Item(f"NW2021122422244843{n:02d}", f"第{n}条 西安地铁新线路开通", body=f"<p>正文{n}</p>")
        for n in range(count)
    ]


def source_for(url: str, **changes: object) -> Source:
    base = Source(
        id="sanqin",
        name="三秦都市报",
        url=url,
        category="三秦都市报",
        tags=("三秦都市报新闻",),
        share_code=ShareCodeRule("param", "infoCode"),
        allow_private=True,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(Limits())


def stored(store: SqliteStore) -> list[tuple[str, str, str]]:
    rows = store.db.execute(
        """SELECT e.code, e.title, group_concat(t.name) FROM entries e
           LEFT JOIN entry_tags t ON t.code = e.code GROUP BY e.code ORDER BY e.code"""
    ).fetchall()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("render", [rss, atom])
def test_a_changed_feed_reads_only_its_new_entry(
    render: object, server: FeedServer, clock: Clock, tmp_path: Path, fetcher: Fetcher
) -> None:
    assert callable(render)
    url = server.set("/feed.xml", render(items(20)))
    source = source_for(url)
    with SqliteStore(tmp_path / "db.sqlite") as store:
        first = poll_source(source, store, fetcher, clock=clock)
        assert first.new == 20
        assert len(store.known_digests(source.id)) == 20

        server.set("/feed.xml", render([*items(21)[20:], *items(20)]))
        body = render([*items(21)[20:], *items(20)])
        parsed = extract(source, body, url, "", SEEN, known_digests=store.known_digests("sanqin"))
        assert [e.code for e in parsed.entries] == ["NW202112242224484320"]
        assert parsed.skipped == 20

        clock.advance(600)
        second = poll_source(source, store, fetcher, clock=clock)
        assert (second.result, second.new, second.updated) == ("ok", 1, 0)
        assert len(stored(store)) == 21
        assert len(store.known_digests(source.id)) == 21


def test_a_source_never_parsed_is_polled_without_asking_for_digests(
    server: FeedServer, clock: Clock, tmp_path: Path, fetcher: Fetcher
) -> None:
    """Nothing of a new source can be skipped: its first poll spends no query on it."""
    url = server.set("/feed.xml", rss(items(3)))
    source = source_for(url)
    with SqliteStore(tmp_path / "db.sqlite") as store:
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        assert poll_source(source, store, fetcher, clock=clock).new == 3
        assert not [s for s in statements if "raw_digest, code" in s]

        server.set("/feed.xml", rss(items(4)))
        clock.advance(600)
        assert poll_source(source, store, fetcher, clock=clock).new == 1
        assert len([s for s in statements if "raw_digest, code" in s]) == 1


def test_an_edited_entry_is_read_again_and_updated(
    server: FeedServer, clock: Clock, tmp_path: Path, fetcher: Fetcher
) -> None:
    url = server.set("/feed.xml", rss(items(5)))
    source = source_for(url)
    with SqliteStore(tmp_path / "db.sqlite") as store:
        poll_source(source, store, fetcher, clock=clock)
        edited = items(5)
        edited[2].title = "第2条 西安地铁新线路开通（更新）"
        server.set("/feed.xml", rss(edited))
        clock.advance(600)
        outcome = poll_source(source, store, fetcher, clock=clock)
        assert (outcome.new, outcome.updated) == (0, 1)
        titles = {code: title for code, title, _ in stored(store)}
        assert titles["NW202112242224484302"].endswith("（更新）")


def test_a_config_change_reads_every_entry_again(
    server: FeedServer, clock: Clock, tmp_path: Path, fetcher: Fetcher
) -> None:
    """The digest is salted with the source's config: after a config change the next
    changed body is read whole again, as it was before entries could be skipped."""
    url = server.set("/feed.xml", rss(items(5)))
    source = source_for(url)
    with SqliteStore(tmp_path / "db.sqlite") as store:
        poll_source(source, store, fetcher, clock=clock)
        ruled = source_for(url, rules=(Rule(add_tags=("地铁",), match_title="地铁"),))
        assert source_salt(ruled, None) != source_salt(source, None)
        known = store.known_digests(source.id)
        assert extract(source, rss(items(6)), url, "", SEEN, known_digests=known).skipped == 5
        again = extract(ruled, rss(items(6)), url, "", SEEN, known_digests=known)
        assert (again.skipped, len(again.entries)) == (0, 6)
        server.set("/feed.xml", rss(items(6)))
        clock.advance(600)
        outcome = poll_source(ruled, store, fetcher, clock=clock)
        assert outcome.new == 1
        new_tags = {code: tags for code, _, tags in stored(store)}["NW202112242224484305"]
        assert "地铁" in new_tags.split(",")


def test_entries_stored_without_a_digest_get_one_on_the_next_change(
    server: FeedServer, clock: Clock, tmp_path: Path, fetcher: Fetcher
) -> None:
    """A database from before digests (schema 4): its unchanged entries are read once
    more, found unchanged, and given their digest, so later changes skip them."""
    url = server.set("/feed.xml", rss(items(5)))
    source = source_for(url)
    with SqliteStore(tmp_path / "db.sqlite") as store:
        poll_source(source, store, fetcher, clock=clock)
        with store.transaction() as db:
            db.execute("UPDATE entry_sources SET raw_digest = NULL")
        assert store.known_digests(source.id) == {}
        server.set("/feed.xml", rss(items(6)))
        clock.advance(600)
        outcome = poll_source(source, store, fetcher, clock=clock)
        assert (outcome.new, outcome.updated) == (1, 0)
        assert len(store.known_digests(source.id)) == 6


def test_salted_digests_differ_per_source_and_leave_empty_alone() -> None:
    one = source_salt(source_for("http://a.example.cn/feed.xml"), None)
    two = source_salt(source_for("http://a.example.cn/feed.xml", tags=("别的",)), None)
    assert salted("abc", one) != salted("abc", two)
    assert salted("", one) == ""


def test_a_skipped_first_copy_still_wins_over_a_later_copy_read() -> None:
    """Document order: A (stored, skipped), B (new), A' (same article as A, another guid,
    never stored), C (stored, skipped). Only B is kept: A' is a later copy of A."""
    salt = b"s"
    known = KnownEntries({salted("a", salt): "NW1", salted("c", salt): "NW3"}, salt)
    answers = [known(digest) for digest in ("a", "b", "a2", "c")]
    assert answers == [True, False, False, True]
    read = [EntryRecord("g-b", "B", "", code="NW2"), EntryRecord("g-a2", "A2", "", code="NW1")]
    assert [e.code for e in known.first_copies(read)] == ["NW2"]
