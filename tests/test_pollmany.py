"""poll_many: the same store as polling one by one, with unchanged entries skipped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from aggregator import fastparse
from aggregator.config import Config, ShareCodeRule, Source, load_config
from aggregator.fetch import Fetcher
from aggregator.poll import poll_source
from aggregator.pollmany import in_pool, poll_many, poll_one, prepare, process_pool
from aggregator.store import Store
from bench.corpus import Corpus
from tests.conftest import Clock
from tests.feeds import Item, atom, rss
from tests.feedserver import FeedServer

RULE = {"param": "infoCode"}


def corpus_config(server: FeedServer, write_config: Any, corpus: Corpus) -> Config:
    sources = []
    for feed in corpus.feeds:
        url = server.set(feed.path, corpus.render(feed), content_type=feed.content_type)
        sources.append(
            {
                "id": f"s{feed.index}",
                "name": f"第{feed.index}版",
                "url": url,
                "category": "三秦都市报",
                "tags": ["三秦都市报新闻"],
                "share_code": RULE,
            }
        )
    sources.append(
        {"id": "broken", "name": "坏", "url": server.url("/missing.xml"), "category": "x"}
    )
    return load_config(write_config(sources))


def table(path: Path) -> list[tuple[Any, ...]]:
    """The store's content; which duplicate's link an entry keeps depends on which
    source was polled first, so the link is left out."""
    with Store(path) as store:
        rows = store.db.execute(
            """SELECT e.code, e.title, e.published, e.updated, e.content, e.summary,
                 e.categories, es.source_id, es.guid, es.entry_hash
               FROM entries e JOIN entry_sources es ON es.code = e.code
               ORDER BY e.code, es.source_id"""
        ).fetchall()
    return [tuple(r) for r in rows]


def test_poll_many_stores_what_polling_one_by_one_stores(
    server: FeedServer, write_config: Any, clock: Clock, tmp_path: Path
) -> None:
    corpus = Corpus(12, 6, seed=11, duplicates=0.3)
    config = corpus_config(server, write_config, corpus)
    one_by_one = tmp_path / "one.db"
    with Store(one_by_one) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        for source in config.sources:
            poll_source(source, store, fetcher, clock=clock)
    with Store(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcomes = poll_many(config.sources, store, fetcher, workers=6, clock=clock)
    assert [o.source_id for o in outcomes] == [s.id for s in config.sources]
    assert outcomes[-1].result == "error"  # a failing source stops nothing
    assert all(o.result == "ok" for o in outcomes[:-1])
    assert sum(o.added_source for o in outcomes) > 0  # the duplicates were recognised
    assert table(config.settings.database) == table(one_by_one)


def test_a_new_entry_costs_one_entry(server: FeedServer, write_config: Any, clock: Clock) -> None:
    corpus = Corpus(2, 20, seed=5, duplicates=0)
    config = corpus_config(server, write_config, corpus)
    source = config.sources[0]
    with Store(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        assert poll_one(source, store, fetcher, clock=clock).new == 20
        known = store.raw_digests(source.id)
        assert len(known) == 20

        article = corpus.add_entry(corpus.feeds[0])
        body = corpus.render(corpus.feeds[0])
        server.set(corpus.feeds[0].path, body, content_type=corpus.feeds[0].content_type)
        prepared = prepare(source, body, source.url, corpus.feeds[0].content_type, clock(), known)
        assert prepared.skipped == 20
        assert [e.code for e in prepared.feed.entries] == [article.code]

        clock.advance(600)
        outcome = poll_one(source, store, fetcher, clock=clock)
        assert (outcome.result, outcome.new, outcome.updated) == ("ok", 1, 0)
        assert outcome.changed_feeds >= {("all", ""), ("source", source.id)}
        assert len(store.raw_digests(source.id)) == 21


def test_a_changed_context_processes_entries_again(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    item = Item("NW1", "标题", guid="g1", date="2021-12-24 10:30:00")
    url = server.set("/a.xml", rss([item]))
    source = Source("a", "a", url, "c", share_code=ShareCodeRule(param="infoCode"))
    path = write_config([])
    config = load_config(path)
    with Store(config.settings.database) as store:
        body = rss([item])
        first = prepare(source, body, url, "", clock(), {})
        known = {first.keys[0]: "NW1"}
        assert prepare(source, body, url, "", clock(), known).skipped == 1
        elsewhere = replace(source, timezone="Europe/Berlin")
        again = prepare(elsewhere, body, url, "", clock(), known)
        assert again.skipped == 0
        assert again.feed.entries[0].published != first.feed.entries[0].published
        del store


def test_first_entry_per_code_still_wins_when_others_are_skipped(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    one = Item("NW9", "第一版本", guid="g1")
    two = Item("NW9", "第二版本", guid="g2")
    url = server.set("/a.xml", rss([one, two]))
    config = load_config(
        write_config([{"id": "a", "name": "a", "url": url, "category": "c", "share_code": RULE}])
    )
    source = config.sources[0]
    with Store(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        assert poll_one(source, store, fetcher, clock=clock).new == 1
        server.set("/a.xml", rss([one, two, Item("NW10", "新", guid="g3")]))
        clock.advance(60)
        outcome = poll_one(source, store, fetcher, clock=clock)
        assert (outcome.new, outcome.updated) == (1, 0)
        assert store.articles(("all", ""), 5)[-1].title == "第一版本"
        # An edit of the first copy is still an update.
        server.set("/a.xml", rss([replace(one, title="第一版本（改）"), two]))
        clock.advance(60)
        assert poll_one(source, store, fetcher, clock=clock).updated == 1


def test_feeds_that_the_fast_path_declines_are_polled_too(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    body = rss([Item("NW1", "甲")]).replace(b"<rss", b"<!DOCTYPE rss>\n<rss", 1)
    assert fastparse.read(body, url="http://x/") is None
    url = server.set("/a.xml", body)
    url_b = server.set("/b.xml", atom([Item("NW2", "乙")]), content_type="application/atom+xml")
    config = load_config(
        write_config(
            [
                {"id": "a", "name": "a", "url": url, "category": "c", "share_code": RULE},
                {"id": "b", "name": "b", "url": url_b, "category": "c", "share_code": RULE},
            ]
        )
    )
    with Store(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcomes = poll_many(config.sources, store, fetcher, workers=2, clock=clock)
        assert [(o.result, o.new) for o in outcomes] == [("ok", 1), ("ok", 1)]
        assert store.raw_digests("a") == {}
        assert len(store.raw_digests("b")) == 1


def test_parsing_in_a_process_pool_gives_the_same_result(clock: Clock) -> None:
    corpus = Corpus(3, 4, seed=2)
    source = Source("s", "s", "http://x/feed.xml", "c", share_code=ShareCodeRule(param="infoCode"))
    pool = process_pool(2)
    try:
        run = in_pool(pool)
        for feed in corpus.feeds:
            body = corpus.render(feed)
            here = prepare(source, body, source.url, feed.content_type, clock(), {})
            there = run(source, body, source.url, feed.content_type, clock(), {})
            assert there == here
    finally:
        pool.shutdown()
