"""JSON Feed documents read like RSS and Atom: the same entries, the same safety."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aggregator.config.loader import Source
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.errors import ParseError
from aggregator.models import Enclosure
from aggregator.parse.jsonfeed import looks_like_json, parse_json_feed
from aggregator.parse.kinds import parse_feed
from aggregator.parse.limits import FieldLimits
from aggregator.run.poll import extract
from aggregator.store.sqlite import SqliteStore

SEEN = datetime(2026, 1, 1, tzinfo=UTC)
URL = "https://trips.example.cn/feed.json"
SHARE = "http://finews.example.cn/html_News/NewsShare.html?infoCode="


def document(*items: dict[str, Any], **feed: Any) -> bytes:
    head = {"version": "https://jsonfeed.org/version/1.1", "title": "三秦 · JSON"}
    return json.dumps({**head, **feed, "items": list(items)}, ensure_ascii=False).encode()


def test_items_become_entries_field_by_field() -> None:
    body = document(
        {
            "id": "https://trips.example.cn/1",
            "url": "https://trips.example.cn/2024/ferry.html",
            "title": "Ferry & <harbour>",
            "content_html": '<p onclick="x()">Took the ferry. <img src="img/f.jpg"></p>'
            "<script>alert(1)</script>",
            "summary": "A trip < 1 h",
            "date_published": "2024-05-03T07:58:12+02:00",
            "date_modified": "2024-05-04T08:00:00Z",
            "authors": [{"name": "Ana"}],
            "tags": ["ferry", 3, "", None],
            "attachments": [
                {
                    "url": "https://trips.example.cn/m.mp3",
                    "mime_type": "audio/mpeg",
                    "size_in_bytes": 9,
                },
                {"url": "javascript:alert(1)", "mime_type": "text/html"},
            ],
        },
        home_page_url="https://trips.example.cn/",
    )
    feed = parse_json_feed(body, url=URL, seen_at=SEEN)
    assert (feed.version, feed.title, feed.link, feed.feed_id) == (
        "json11",
        "三秦 · JSON",
        "https://trips.example.cn/",
        "https://trips.example.cn/",
    )
    [entry] = feed.entries
    assert entry.guid == "https://trips.example.cn/1"
    assert entry.link == "https://trips.example.cn/2024/ferry.html"
    assert entry.title == "Ferry & <harbour>"  # plain text stays as written
    assert "script" not in entry.content and "onclick" not in entry.content
    assert 'src="https://trips.example.cn/2024/img/f.jpg"' in entry.content  # the item's URL
    assert entry.summary == "A trip &lt; 1 h"
    assert entry.published == datetime(2024, 5, 3, 5, 58, 12, tzinfo=UTC)
    assert entry.updated == datetime(2024, 5, 4, 8, 0, tzinfo=UTC)
    assert entry.author == "Ana"
    assert entry.categories == ("ferry", "3")
    assert entry.enclosures == (Enclosure("https://trips.example.cn/m.mp3", "audio/mpeg", 9),)


def test_version_one_shapes_and_plain_text_content() -> None:
    body = document(
        {
            "id": 7,
            "external_url": "https://elsewhere.example.cn/a",
            "content_text": "第一段 <b>不是标签</b>\n第二行\n\n第二段",
            "author": {"name": "王晨"},
        },
        version="https://jsonfeed.org/version/1",
        feed_url="https://trips.example.cn/feed.json",
    )
    feed = parse_json_feed(body, url=URL, seen_at=SEEN)
    [entry] = feed.entries
    assert (feed.version, feed.feed_id) == ("json1", "https://trips.example.cn/feed.json")
    assert (entry.guid, entry.link, entry.author) == ("7", "https://elsewhere.example.cn/a", "王晨")
    assert entry.content == ("<p>第一段 &lt;b&gt;不是标签&lt;/b&gt;<br>第二行</p><p>第二段</p>")
    assert entry.summary == ""  # no summary of its own: the content is not repeated
    assert entry.published is None  # no date: the store uses the time it was first seen


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "broken JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"items": []}', "without a JSON Feed version"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "list of items"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 200_000, "JSON"),
        ('{"title": "三秦"}'.encode("gb18030"), "not UTF-8"),
    ],
)
def test_broken_documents_are_refused_by_name(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_json_feed(body, url=URL, seen_at=SEEN)


def test_odd_values_are_passed_over_and_limits_kept() -> None:
    items = [
        "not an item",
        {"id": ["a list"], "title": {"an": "object"}, "url": "ftp://x/", "tags": "one"},
        *(
            {"id": f"n{i}", "title": f"标题\x01{i}", "content_html": "<p>\x02正文</p>"}
            for i in range(9)
        ),
    ]
    body = document(*items)
    feed = parse_json_feed(body, url=URL, seen_at=SEEN, limits=FieldLimits(entries=5))
    assert len(feed.entries) == 4  # the first five items, less the one that is not an object
    odd, *rest = feed.entries
    assert (odd.guid, odd.title, odd.link, odd.categories) == ("", "", "", ())
    assert [e.title for e in rest] == ["标题0", "标题1", "标题2"]
    assert all(e.content == "<p>正文</p>" for e in rest)


def test_a_json_feed_is_recognised_by_its_type_or_its_first_byte() -> None:
    assert looks_like_json(b"[]", "application/feed+json; charset=utf-8")
    assert looks_like_json(b"\xef\xbb\xbf\n  {", "")
    assert looks_like_json(b"{", "text/plain")
    assert not looks_like_json(b"<rss/>", "application/rss+xml")
    body = document({"id": "1", "title": "经由解析入口", "content_html": "<p>x</p>"})
    assert [e.title for e in parse_feed(body, url=URL, seen_at=SEEN).entries] == ["经由解析入口"]


def test_the_same_article_in_json_and_rss_is_one_entry(tmp_path: Any) -> None:
    code = "NW202112242224484383"
    json_body = document(
        {"id": "j1", "url": SHARE + code, "title": "宝鸡交警", "content_html": "<p>正文</p>"}
    )
    rss_body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>宝鸡交警</title><link>{SHARE}{code}&amp;from=rss</link>"
        "<guid>r1</guid><description>&lt;p&gt;正文&lt;/p&gt;</description></item>"
        "</channel></rss>"
    ).encode()
    rule = ShareCodeRule("param", "infoCode")
    sources = [
        Source(
            id=kind,
            name=kind,
            url=f"http://finews.example.cn/{kind}",
            category="c",
            share_code=rule,
        )
        for kind in ("json", "rss")
    ]
    with SqliteStore(tmp_path / "s.db") as store:
        store.sync_sources(sources)
        for source, body in zip(sources, (json_body, rss_body), strict=True):
            feed = extract(source, body, source.url, "", SEEN)
            store.ingest(source, feed, list(feed.entries), SEEN)
        rows = store.db.execute("SELECT code FROM entries").fetchall()
        links = store.db.execute("SELECT source_id FROM entry_sources ORDER BY 1").fetchall()
    assert rows == [(code,)]
    assert links == [("json",), ("rss",)]
