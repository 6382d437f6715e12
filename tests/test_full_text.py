"""Full articles behind summary-only feeds (`full_text`): article pages with navigation,
comments and ads around the text, served on 127.0.0.1, fetched for new or changed
entries only, extracted and sanitized; hostile article pages fail alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from html import escape
from typing import Any

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import load_config
from aggregator.errors import ParseError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.guard import is_private_address
from aggregator.fetch.request import Limits
from aggregator.parse.article import extract_article
from aggregator.parse.sanitize import plain_text
from aggregator.run.fulltext import PROCESS_CACHE
from aggregator.run.poll import poll_source
from aggregator.run.pollrun import poll_many
from aggregator.run.probe import probe_source
from aggregator.store.sqlite import SqliteStore
from tests.articles import ARTICLES, Article, leaks, recall
from tests.conftest import Clock
from tests.feedserver import FeedServer
from tests.hostile import HostileServer, drip, redirect, respond

NOW = datetime(2021, 12, 24, 2, 0, tzinfo=UTC)
# Those the automatic extractor gets whole and clean; the other is read with a selector.
AUTOMATIC = [a for a in ARTICLES if a.name != "br-paragraphs"]
BY_NAME = {a.name: a for a in ARTICLES}


def summary_feed(items: list[tuple[str, str, str]]) -> bytes:
    """RSS whose items carry a one-line summary: (link, title, summary)."""
    parts = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<guid>{escape(link)}</guid><description>{escape(summary)}</description></item>"
        for link, title, summary in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>摘要</title>'
        f"<link>http://news.example.cn/</link>{parts}</channel></rss>"
    ).encode()


def _loopback_is_public(address: str) -> bool:
    """Private space in which 127.0.0.1 is public and 127.0.0.2 private, so both a
    refusal and a fetch can be seen on loopback (with is_private_address itself, every
    article here is refused: the test servers are on loopback)."""
    return address != "127.0.0.1" and (address == "127.0.0.2" or is_private_address(address))


@pytest.mark.parametrize("article", AUTOMATIC, ids=[a.name for a in AUTOMATIC])
def test_the_article_is_extracted_whole_without_its_surroundings(article: Article) -> None:
    content = extract_article(article.body, url="http://news.example.cn/a/1.html")
    text = plain_text(content)
    assert recall(article, text) >= 0.9
    assert leaks(article, text) == []


def test_a_selector_reads_what_the_extractor_cannot() -> None:
    article = BY_NAME["br-paragraphs"]
    automatic = plain_text(extract_article(article.body, url="http://x.cn/a"))
    assert leaks(article, automatic)  # the breadcrumbs come along: a known miss
    chosen = plain_text(extract_article(article.body, url="http://x.cn/a", selector="#endText"))
    assert recall(article, chosen) == 1.0 and leaks(article, chosen) == []
    with pytest.raises(ParseError, match="matches nothing"):
        extract_article(article.body, url="http://x.cn/a", selector="div.article")


def test_the_extracted_article_is_sanitized() -> None:
    article = BY_NAME["images-ads"]
    hostile = article.html.replace(
        '<p><img src="/img/cold.jpg" alt=""></p>',
        '<p><img src="/img/cold.jpg" onerror="steal()"><script>steal()</script>'
        '<a href="javascript:steal()">链接</a><iframe src="http://evil.example/"></iframe></p>',
    )
    content = extract_article(hostile.encode(), url="http://news.example.cn/a/1.html")
    assert "script" not in content and "steal" not in content and "iframe" not in content
    assert 'src="http://news.example.cn/img/cold.jpg"' in content  # made absolute
    assert recall(article, plain_text(content)) == 1.0


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer(lifetime=60) as server:
        yield server


def poll_once(write_config: Any, url: str, fetcher: Fetcher, **fields: Any) -> tuple[Any, Any]:
    table = {"id": "s", "name": "n", "url": url, "category": "c", **fields}
    config = load_config(write_config([table]), env={})
    store = SqliteStore(config.settings.database)
    store.sync_sources(config.sources)
    outcome = poll_source(config.sources[0], store, fetcher, clock=Clock(NOW))
    return store, outcome


def test_a_summary_only_feed_gets_its_articles(server: FeedServer, write_config: Any) -> None:
    items = []
    for number, article in enumerate(AUTOMATIC):
        link = server.set(f"/a/{number}.html", article.body, content_type="text/html")
        items.append((link, article.name, f"摘要{number}"))
    feed = server.set("/feed.xml", summary_feed(items))
    with Fetcher(private=_loopback_is_public) as fetcher:
        store, outcome = poll_once(write_config, feed, fetcher, full_text=True)
    assert outcome.result == "ok" and outcome.new == len(AUTOMATIC)
    rows = {r["title"]: r for r in store.db.query("SELECT * FROM entries")}
    for number, article in enumerate(AUTOMATIC):
        row = rows[article.name]
        assert recall(article, plain_text(row["content"])) >= 0.9
        assert leaks(article, plain_text(row["content"])) == []
        assert row["summary"] == f"摘要{number}"  # the feed's own text, kept
    store.close()


def test_hostile_article_pages_fail_alone(
    server: FeedServer, hostile: HostileServer, write_config: Any
) -> None:
    good = BY_NAME["modern-comments"]
    hostile.routes["/good.html"] = respond(good.body, content_type="text/html")
    hostile.routes["/huge.html"] = respond(b"<p>" + b"x" * 300_000, content_type="text/html")
    hostile.routes["/slow.html"] = drip(good.body, interval=0.2)
    hostile.routes["/inside.html"] = redirect(f"http://127.0.0.2:{hostile.port}/admin", 302)
    # The article among 5,000 scripts: over parse_inline_max_bytes, so read in the sandbox.
    laden = good.html.replace("<main>", "<main>" + "<script>while(1){steal()}</script>" * 5000)
    hostile.routes["/scripts.html"] = respond(laden.encode(), content_type="text/html")
    names = ("good", "huge", "slow", "inside", "scripts")
    items = [(hostile.url(f"/{name}.html"), name, f"摘要：{name}") for name in names]
    items.append((f"http://127.0.0.2:{hostile.port}/direct.html", "direct", "摘要：direct"))
    feed = server.set("/feed.xml", summary_feed(items))
    limits = Limits(deadline=2.0, max_body_bytes=200_000)
    with Fetcher(limits, private=_loopback_is_public) as fetcher:
        # allow_private is for the source's own URL: never for its articles' links.
        store, outcome = poll_once(write_config, feed, fetcher, full_text=True, allow_private=True)
    assert outcome.result == "ok" and outcome.new == len(items)
    rows = {r["title"]: r for r in store.db.query("SELECT * FROM entries")}
    for name in ("good", "scripts"):
        assert recall(good, plain_text(rows[name]["content"])) == 1.0
        assert leaks(good, plain_text(rows[name]["content"])) == []
        assert "script" not in rows[name]["content"] and "steal" not in rows[name]["content"]
    for name in ("huge", "slow", "inside", "direct"):
        assert rows[name]["content"] == f"摘要：{name}", name  # the feed's text, kept
    assert hostile.hits("/direct.html") == 0  # refused before connecting
    assert hostile.hits("/admin") == 0
    store.close()


def test_a_changed_feed_refetches_only_the_changed_entries_article(
    server: FeedServer, write_config: Any
) -> None:
    articles = AUTOMATIC[:3]
    links = [
        server.set(f"/a/{n}.html", a.body, content_type="text/html") for n, a in enumerate(articles)
    ]
    items = [(link, a.name, "摘要") for link, a in zip(links, articles, strict=True)]
    server.set("/feed.xml", summary_feed(items))
    config = load_config(
        write_config(
            [
                {
                    "id": "s",
                    "name": "n",
                    "url": server.url("/feed.xml"),
                    "category": "c",
                    "full_text": True,
                }
            ]
        ),
        env={},
    )
    clock = Clock(NOW)
    fetcher = Fetcher(private=_loopback_is_public)
    with SqliteStore(config.settings.database) as store, fetcher:
        store.sync_sources(config.sources)
        assert poll_source(config.sources[0], store, fetcher, clock=clock).new == 3
        assert [server.hits(f"/a/{n}.html") for n in range(3)] == [1, 1, 1]
        clock.advance(3600)
        items[1] = (links[1], articles[1].name, "摘要（更新）")  # one entry edited
        server.set("/feed.xml", summary_feed(items))
        second = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert (second.updated, second.unchanged) == (1, 2)
        assert [server.hits(f"/a/{n}.html") for n in range(3)] == [1, 2, 1]
        asked = [h for p, h in server.requests if p == "/a/1.html"][-1]
        assert asked.get("If-None-Match")  # conditional: the page had not changed (304)
        assert server.statuses_for("/a/1.html") == [200, 304]
        row = store.db.execute(
            "SELECT summary, content FROM entries WHERE link = ?", [links[1]]
        ).fetchone()
        assert row[0] == "摘要（更新）"
        assert recall(articles[1], plain_text(row[1])) >= 0.9  # kept from the first fetch


def test_aggregator_poll_fetches_articles_once_its_feeds_are_in(
    server: FeedServer, write_config: Any
) -> None:
    """`aggregator poll` drives many fetches from one thread; a source's articles are
    fetched after them (their host may be one of the feeds'). (Its worker processes
    do the same, with a fetcher of their own, which refuses loopback articles: not
    seen here.)"""
    sources = []
    for number, article in enumerate(AUTOMATIC[:2]):
        link = server.set(f"/a/{number}.html", article.body, content_type="text/html")
        feed = server.set(f"/feed{number}.xml", summary_feed([(link, article.name, "摘要")]))
        sources.append({"id": f"s{number}", "name": "n", "url": feed, "category": "c"})
    sources[0]["full_text"] = True
    config = load_config(write_config(sources), env={})
    fetcher = Fetcher(private=_loopback_is_public)
    with SqliteStore(config.settings.database) as store, fetcher:
        store.sync_sources(config.sources)
        outcomes = poll_many(config.sources, store, fetcher, workers=2, clock=Clock(NOW))
        assert [o.result for o in outcomes] == ["ok", "ok"]
        rows = {r["title"]: r["content"] for r in store.db.query("SELECT * FROM entries")}
    assert recall(AUTOMATIC[0], plain_text(rows[AUTOMATIC[0].name])) >= 0.9
    assert rows[AUTOMATIC[1].name] == "摘要"  # no full_text for that source


def test_sources_check_shows_the_first_article(server: FeedServer, write_config: Any) -> None:
    article = BY_NAME["modern-comments"]
    link = server.set("/a/1.html", article.body, content_type="text/html")
    feed = server.set("/feed.xml", summary_feed([(link, "标题", "摘要")]))
    table = {"id": "s", "name": "n", "url": feed, "category": "c", "full_text": True}
    config = load_config(write_config([table]), env={})
    with Fetcher(private=_loopback_is_public) as fetcher:
        probe = probe_source(fetcher, config.sources[0], NOW)
    assert probe.article is not None and probe.article["error"] == ""
    assert recall(article, probe.article["text"]) == 1.0
    # The command's own fetcher counts loopback as private: the refusal is what it shows.
    path = write_config([{**table, "allow_private": True}])
    result = CliRunner().invoke(main, ["sources", "check", "s", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert f"full text of {link}: failed (refused a private address" in result.output


def test_a_restarted_process_takes_unchanged_entries_articles_from_the_store(
    server: FeedServer, write_config: Any
) -> None:
    """A feed only feedparser reads (a bare "&": the fast path declines it, so no entry
    is skipped by its digest), polled again by a process with an empty cache: the
    store's copy of each unchanged entry, article included, stands; nothing is asked."""
    articles = AUTOMATIC[:2]
    links = [
        server.set(f"/a/{n}.html", a.body, content_type="text/html") for n, a in enumerate(articles)
    ]
    items = [(link, a.name, "摘要") for link, a in zip(links, articles, strict=True)]
    broken = summary_feed(items).replace(b"<title>\xe6\x91\x98\xe8\xa6\x81", b"<title>A & B", 1)
    feed = server.set("/feed.xml", broken)
    table = {"id": "s", "name": "n", "url": feed, "category": "c", "full_text": True}
    config = load_config(write_config([table]), env={})
    clock = Clock(NOW)
    fetcher = Fetcher(private=_loopback_is_public)
    with SqliteStore(config.settings.database) as store, fetcher:
        store.sync_sources(config.sources)
        assert poll_source(config.sources[0], store, fetcher, clock=clock).new == 2
        PROCESS_CACHE.clear()  # as after a restart
        clock.advance(3600)
        server.set("/feed.xml", broken + b"\n")  # new bytes, the same entries
        again = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert (again.result, again.unchanged) == ("ok", 2)
        assert [server.hits(f"/a/{n}.html") for n in range(2)] == [1, 1]
