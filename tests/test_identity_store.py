"""One article, one entry, for feeds off the share-code path: real HTTP, parser, store
and publisher. Short guids of two feeds never meet; description-only items are
entries of their own, with readable titles; a feed regenerating its guids does not
grow; a live blog keeps every update."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser

from aggregator.config.loader import Config, Source, load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.parse.sanitize import shown_title, text_title
from aggregator.publish.publisher import Publisher, entry_id
from aggregator.run.poll import PollOutcome, extract, poll_source
from aggregator.store.sqlite import SqliteStore
from tests.atomcheck import assert_valid
from tests.conftest import Clock
from tests.feeds import SHARE, rss_entries
from tests.feedserver import FeedServer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def configure(
    write_config: Any, server: FeedServer, feeds: dict[str, bytes], **extra: Any
) -> Config:
    sources = [
        {"id": source_id, "name": source_id, "url": server.set(f"/{source_id}.xml", body)}
        | {"category": "blogs"}
        | extra.get(source_id, {})
        for source_id, body in feeds.items()
    ]
    return load_config(write_config(sources))


def poll(config: Config, store: SqliteStore, clock: Clock) -> list[PollOutcome]:
    with Fetcher() as fetcher:
        return [poll_source(s, store, fetcher, clock=clock) for s in config.sources]


def stored(store: SqliteStore) -> dict[str, tuple[str, list[str]]]:
    """code -> (title, carriers) of every entry."""
    return {
        row["code"]: (row["title"], store.entry_sources(row["code"]))
        for row in store.db.query("SELECT code, title FROM entries")
    }


def published_titles(config: Config) -> dict[str, str]:
    data = (config.settings.output_dir / "all.xml").read_bytes()
    assert_valid(data)
    return {e.id: e.title for e in feedparser.parse(data).entries}


def test_two_feeds_numbering_their_items_keep_all_their_articles(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    garden = [
        {"guid": "1", "title": "Planting garlic", "link": "http://garden.example.org/garlic"},
        {"guid": "2", "title": "Pruning roses", "link": "http://garden.example.org/roses"},
    ]
    chess = [
        {"guid": "1", "title": "Club night moves", "link": "http://chess.example.net/night"},
        {"guid": "2", "title": "Tournament results", "link": "http://chess.example.net/res"},
        {"guid": "dup-1", "title": "No link at all"},
    ]
    config = configure(
        write_config, server, {"garden": rss_entries(garden), "chess": rss_entries(chess)}
    )
    with SqliteStore(config.settings.database) as store:
        outcomes = poll(config, store, clock)
        assert [(o.new, o.added_source) for o in outcomes] == [(2, 0), (3, 0)]
        assert stored(store) == {
            "guid@garden:1": ("Planting garlic", ["garden"]),
            "guid@garden:2": ("Pruning roses", ["garden"]),
            "guid@chess:1": ("Club night moves", ["chess"]),
            "guid@chess:2": ("Tournament results", ["chess"]),
            "guid@chess:dup-1": ("No link at all", ["chess"]),
        }
        Publisher(config, store).publish()
    assert len(published_titles(config)) == 5


def test_an_article_shared_by_share_code_or_permalink_guid_is_one_entry(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    tram = "http://transit.example.com/2022/01/tram"
    date = "Thu, 06 Jan 2022 07:00:00 +0000"
    shared = {"title": "New tram timetable", "link": tram, "date": date}
    feeds = {
        "yaowen": rss_entries([{"guid": "yaowen-1", "title": "地铁", "link": SHARE + "NW1"}]),
        "jiaotong": rss_entries([{"guid": "jt-9", "title": "地铁", "link": SHARE + "NW1&x=1"}]),
        "transit": rss_entries([shared | {"guid": tram, "permalink": "1"}]),
        "digest": rss_entries([shared | {"guid": tram, "permalink": "1", "body": "Via transit"}]),
    }
    rule = {"share_code": {"param": "infoCode"}}
    config = configure(write_config, server, feeds, yaowen=rule, jiaotong=rule)
    with SqliteStore(config.settings.database) as store:
        poll(config, store, clock)
        assert stored(store) == {
            "NW1": ("地铁", ["jiaotong", "yaowen"]),
            "guid:" + tram: ("New tram timetable", ["digest", "transit"]),
        }
        Publisher(config, store).publish()
    assert set(published_titles(config)) == {entry_id("NW1"), entry_id("guid:" + tram)}


def test_description_only_items_are_entries_of_their_own_with_readable_titles(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    texts = [
        "Morning run along the river, 8 km.",
        "Trying a new bread recipe today: rye, caraway and a long, slow overnight rise"
        " in a cold kitchen.",
        "<p>The bread was a <b>success</b>.</p>",
    ]
    config = configure(write_config, server, {"micro": rss_entries([{"body": t} for t in texts])})
    with SqliteStore(config.settings.database) as store:
        assert poll(config, store, clock)[0].new == 3
        codes = set(stored(store))
        for n in range(3):  # the same items, and a feed that changes around them
            clock.advance(3600)
            more = [{"body": f"Later note {n}.", "date": "Mon, 10 Jan 2022 06:00:00 +0000"}]
            server.resources["/micro.xml"].body = rss_entries(
                [*({"body": t} for t in reversed(texts)), *more]
            )
            poll(config, store, clock)
            assert codes < set(stored(store))
        assert len(stored(store)) == 6
        assert all(code.startswith("hash@micro:") for code in stored(store))
        Publisher(config, store).publish()
    titles = set(published_titles(config).values())
    assert {
        "Morning run along the river, 8 km.",
        "Trying a new bread recipe today: rye, caraway and a long, slow overnight rise…",
        "The bread was a success.",
        "Later note 0.",
    } <= titles
    assert not any(t.startswith(("hash", "http")) for t in titles)


def unstable(session: int, guids: str) -> bytes:
    """Three articles; a server that puts its session into every guid."""
    return rss_entries(
        [
            {
                "guid": guids.format(name=name, session=session),
                "title": title,
                "link": f"http://unstable.example.org/a/{name}",
                "date": f"Tue, {11 + n} Jan 2022 08:00:00 +0000",
                "body": f"<p>{title}: details.</p>",
            }
            for n, (name, title) in enumerate(
                [("prices", "Market prices"), ("strike", "Bus strike"), ("snow", "Snow warning")]
            )
        ]
    )


def test_a_feed_with_unstable_guids_polled_five_times_keeps_its_three_entries(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    kinds = {
        "opaque": "{name}-sess{session}",  # source-scoped guids
        "urls": "http://unstable.example.org/a/{name}?sid={session}",  # global ones
    }
    config = configure(write_config, server, {k: unstable(0, g) for k, g in kinds.items()})
    with SqliteStore(config.settings.database) as store:
        for session in range(5):
            for kind, guids in kinds.items():
                server.resources[f"/{kind}.xml"].body = unstable(session, guids)
            outcomes = poll(config, store, clock)
            assert [o.result for o in outcomes] == ["ok", "ok"]
            assert [o.new for o in outcomes] == ([3, 3] if session == 0 else [0, 0])
            clock.advance(3600)
        by_source = {
            kind: store.db.execute(
                "SELECT count(*) FROM entry_sources WHERE source_id = ?", [kind]
            ).fetchone()[0]
            for kind in kinds
        }
        assert by_source == {"opaque": 3, "urls": 3} and store.entry_count() == 6
        # Edited under yet another guid, an article cannot be told from a new one.
        body = unstable(9, kinds["opaque"]).replace(b"Bus strike:", b"Bus strike called off:")
        server.resources["/opaque.xml"].body = body
        assert (poll(config, store, clock)[0].new, store.entry_count()) == (1, 7)


def test_a_live_blog_keeps_every_update_under_its_one_url(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    """One URL, a guid and a title per update: each update is an entry (the same link
    and the same content under a new guid would be one)."""
    link = "http://news.example.org/live/election"
    updates = [
        {"guid": f"block-{n}", "title": f"{20 + n}:00 Count under way", "link": link}
        | {"body": f"<p>Update {n}.</p>", "date": f"Sun, 09 Jan 2022 {20 + n}:00:00 +0000"}
        for n in range(4)
    ]
    config = configure(write_config, server, {"live": rss_entries(updates[:1])})
    with SqliteStore(config.settings.database) as store:
        for count in range(1, 5):
            server.resources["/live.xml"].body = rss_entries(updates[:count][::-1])
            poll(config, store, clock)
            clock.advance(600)
        assert sorted(stored(store)) == [f"guid@live:block-{n}" for n in range(4)]


def test_two_items_with_one_url_title_and_text_are_one_entry(tmp_path: Path) -> None:
    """The boundary, decided: two items with the same link, title and text are the same
    article to a reader, whatever their guids (this is how unstable guids are found)."""
    source = Source("live", "live", "http://news.example.org/feed", "news")
    same = {"title": "Count under way", "link": "http://news.example.org/live", "body": "x"}
    body = rss_entries([same | {"guid": "block-1"}, same | {"guid": "block-2"}])
    feed = extract(source, body, source.url, "", NOW)
    with SqliteStore(tmp_path / "s.db") as store:
        result = store.ingest(source, feed, list(feed.entries), NOW)
        assert (result.new, store.entry_count()) == (1, 1)


def test_a_title_from_text_is_its_first_words() -> None:
    assert text_title("<p>First line.</p><p>Second <b>bold</b> line.</p>") == (
        "First line. Second bold line."
    )
    long = "word " * 30
    assert text_title(long, 24) == "word word word word…"
    chinese = "入冬以来，宝鸡交警加强路面巡查，全市已完成56处农村平交路口交通设施建设。"
    assert text_title(chinese, 20) == "入冬以来，宝鸡交警…"  # two columns a character
    assert text_title("&lt;script&gt; &amp; more") == "<script> & more"  # plain text
    assert shown_title("  Own title ", "summary", "", "") == "Own title"
    assert shown_title("", "", "<p>From the content</p>", "http://x.org/1") == "From the content"
    assert shown_title("", "", "<img src='x.png'>", "http://x.org/1") == "http://x.org/1"
    assert shown_title("", "", "", "") == "Untitled"
