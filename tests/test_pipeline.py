"""The whole pipeline on real parts: HTTP server, feedparser, SQLite, feedgen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import feedparser
import pytest

from aggregator.config.loader import Config, load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.publish.publisher import Publisher, entry_id
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests.atomcheck import assert_valid
from tests.conftest import Clock
from tests.feeds import Item, atom, rss
from tests.feedserver import FeedServer
from tests.publishing import served

SHARED = Item(
    "NW202112240300260002",
    "宝鸡交警多措并举保障冬季道路安全畅通",
    guid="yaowen-2",
    body="<p>入冬以来，宝鸡交警加强路面巡查。</p>",
)
ONLY_A = Item("NW202112240805120001", "西安地铁新线路开通试运营", guid="yaowen-1")
ONLY_B = Item("NW202112241000000004", "西宝高速部分路段施工 请绕行", guid="jt-4")


def two_sources(server: FeedServer, write_config: Any) -> Config:
    a = server.set("/a.xml", rss([ONLY_A, SHARED]))
    shared_in_b = Item(
        SHARED.code,
        SHARED.title,
        guid="jiaotong/8841",
        body=SHARED.body,
        link_extra="&from=jiaotong",
    )
    b = server.set("/b.xml", atom([shared_in_b, ONLY_B]), content_type="application/atom+xml")
    path = write_config(
        [
            {
                "id": "yaowen",
                "name": "要闻",
                "url": a,
                "category": "三秦都市报",
                "category_slug": "sanqindushibao",
                "tags": ["三秦都市报新闻"],
                "share_code": {"param": "infoCode"},
            },
            {
                "id": "jiaotong",
                "name": "交通",
                "url": b,
                "category": "陕西交通",
                "tags": ["三秦都市报新闻", "交通"],
                "share_code": {"param": "infoCode"},
            },
        ]
    )
    return load_config(path)


def poll_all(config: Config, store: SqliteStore, clock: Clock) -> list[Any]:
    with Fetcher() as fetcher:
        return [poll_source(s, store, fetcher, clock=clock) for s in config.sources]


def feed_bytes(config: Config) -> dict[str, bytes]:
    root = config.settings.output_dir
    return served(root)


def test_same_article_from_two_sources_is_one_entry(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = two_sources(server, write_config)
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources)
        outcomes = poll_all(config, store, clock)
        assert [o.result for o in outcomes] == ["ok", "ok"]
        assert outcomes[1].added_source == 1 and outcomes[1].new == 1
        assert store.entry_count() == 3
        assert store.entry_sources(SHARED.code) == ["jiaotong", "yaowen"]
        Publisher(config, store).publish()

    out = config.settings.output_dir
    expected_id = entry_id(SHARED.code)
    for name in [
        "category/sanqindushibao.xml",
        "category/shanxi-jiaotong.xml",
        "tag/sanqin-dushibao-xinwen.xml",
        "tag/jiaotong.xml",
        "all.xml",
        "source/yaowen.xml",
        "source/jiaotong.xml",
    ]:
        data = (out / name).read_bytes()
        assert_valid(data)
        parsed = feedparser.parse(data)
        ids = [e.id for e in parsed.entries if SHARED.code in e.link]
        assert ids == [expected_id], name


def test_published_text_reads_back_exactly(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = two_sources(server, write_config)
    with SqliteStore(config.settings.database) as store:
        poll_all(config, store, clock)
        Publisher(config, store).publish()
    parsed = feedparser.parse(
        (config.settings.output_dir / "tag/sanqin-dushibao-xinwen.xml").read_bytes()
    )
    assert parsed.feed.title == "三秦都市报新闻"
    by_title = {e.title: e for e in parsed.entries}
    assert set(by_title) == {SHARED.title, ONLY_A.title, ONLY_B.title}
    shared = by_title[SHARED.title]
    # Both copies claim the same dates: the one from the first source by id is shown.
    assert shared.link == SHARED.link + "&from=jiaotong"
    assert shared.content[0].value == SHARED.body
    assert shared.content[0].type == "text/html"
    assert {t.label for t in shared.tags} >= {"三秦都市报新闻", "交通", "三秦都市报", "陕西交通"}


def test_edited_article_updates_and_unchanged_poll_writes_nothing(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = two_sources(server, write_config)
    with SqliteStore(config.settings.database) as store:
        poll_all(config, store, clock)
        publisher = Publisher(config, store)
        publisher.publish()
        before = feed_bytes(config)
        before_updated = store.articles(("all", ""), 10)

        clock.advance(3600)
        outcomes = poll_all(config, store, clock)
        assert {o.result for o in outcomes} == {"not_modified"}
        assert publisher.publish() == []
        assert feed_bytes(config) == before

        # The same body without validators is recognised by its hash.
        server.resources["/a.xml"].validators = False
        clock.advance(3600)
        assert poll_all(config, store, clock)[0].result in ("ok", "unchanged")
        assert publisher.publish() == []

        edited = Item(
            SHARED.code, "宝鸡交警保障冬季道路安全畅通（更新）", guid="yaowen-2", body=SHARED.body
        )
        server.set("/a.xml", rss([ONLY_A, edited]))
        clock.advance(3600)
        outcome = poll_all(config, store, clock)[0]
        assert (outcome.new, outcome.updated) == (0, 1)
        assert store.entry_count() == 3
        after = {a.code: a for a in store.articles(("all", ""), 10)}
        old = {a.code: a for a in before_updated}
        assert after[SHARED.code].title == edited.title
        assert after[SHARED.code].updated == clock.now
        assert after[SHARED.code].updated > old[SHARED.code].updated
        assert after[ONLY_A.code].updated == old[ONLY_A.code].updated
        written = {p.name for p in publisher.publish()}
        assert "sanqin-dushibao-xinwen.xml" in written
        parsed = feedparser.parse((config.settings.output_dir / "all.xml").read_bytes())
        assert [e.title for e in parsed.entries].count(edited.title) == 1


def test_not_modified_leaves_entries_untouched(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = two_sources(server, write_config)
    with SqliteStore(config.settings.database) as store:
        poll_all(config, store, clock)
        rows_before = store.articles(("all", ""), 10)
        clock.advance(60)
        outcomes = poll_all(config, store, clock)
        assert [o.result for o in outcomes] == ["not_modified", "not_modified"]
        assert store.articles(("all", ""), 10) == rows_before
    conditional = [h for p, h in server.requests if p == "/a.xml"][-1]
    assert conditional.get("If-None-Match") == server.resources["/a.xml"].etag
    assert server.statuses_for("/a.xml") == [200, 304]


@pytest.mark.parametrize("kind", ["404", "unreachable", "not a feed"])
def test_failing_source_is_recorded_and_others_still_publish(
    kind: str, server: FeedServer, write_config: Any, clock: Clock, tmp_path: Path
) -> None:
    good = server.set("/good.xml", rss([ONLY_A]))
    if kind == "404":
        bad = server.url("/missing.xml")
    elif kind == "unreachable":
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            bad = f"http://127.0.0.1:{probe.getsockname()[1]}/feed.xml"
    else:
        bad = server.set(
            "/page.html", b"<html><body><p>Hello</p></body></html>", content_type="text/html"
        )
    config = load_config(
        write_config(
            [
                {"id": "bad", "name": "坏", "url": bad, "category": "测试"},
                {"id": "good", "name": "好", "url": good, "category": "测试"},
            ]
        )
    )
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources)
        outcomes = poll_all(config, store, clock)
        assert [o.result for o in outcomes] == ["error", "ok"]
        rows = {r["id"]: r for r in store.source_rows()}
        assert rows["bad"]["error_count"] == 1
        assert rows["bad"]["last_error"]
        if kind == "404":
            assert rows["bad"]["last_http_status"] == 404
            assert "404" in rows["bad"]["last_error"]
        if kind == "not a feed":
            assert "not a usable feed" in rows["bad"]["last_error"]
        assert rows["good"]["last_result"] == "ok"
        Publisher(config, store).publish()
    data = (config.settings.output_dir / "source/good.xml").read_bytes()
    assert_valid(data)
    assert ONLY_A.title in data.decode()
