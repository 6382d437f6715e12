"""Reading what sources send: character sets, dates, display hazards, escaped titles,
relative links of file: sources (issue 21). Each through the whole pipeline: served by
a real HTTP server on 127.0.0.1 (or read from a real file), stored, published, every
published document checked (tests/pipeline.py)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from aggregator.parse.encoding import decode
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.migrations import MIGRATIONS
from tests import fpcorpus
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.pipeline import A, run_source

# The encoding each of feedparser's documents is in (its "Expect:" line), as a Python codec.
CHARDET_CODECS = {
    "big5.xml": "big5",
    "eucjp.xml": "euc_jp",
    "euckr.xml": "euc_kr",
    "gb2312.xml": "gb2312",
    "koi8r.xml": "koi8_r",
    "shiftjis.xml": "shift_jis",
    "tis620.xml": "tis_620",
    "windows1255.xml": "cp1255",
}
# An element the fast path does not know: feedparser reads the document instead.
TO_FEEDPARSER = b"<comments>x</comments><foo:bar xmlns:foo='urn:x:y'/>"
PATHS = pytest.mark.parametrize("path", ["fast", "feedparser"])
BEFORE_RAW_DATES = 12  # the schema version before migration 13 added them


def feed_for(path: str, items: list[Item], **kwargs: Any) -> bytes:
    body = rss(items, **kwargs)
    return body.replace(b"</item>", TO_FEEDPARSER + b"</item>") if path == "feedparser" else body


def titles(run: Any) -> dict[str, str]:
    """Stored titles by share code."""
    return {row["code"]: row["title"] for row in run.entries}


# --- character sets ------------------------------------------------------------------------


def with_bad_bytes(body: bytes) -> bytes:
    """A few bytes that are not UTF-8 in the middle of a UTF-8 document's text."""
    at = body.index("正文二".encode())
    return body[:at] + b"\xff\xfe\x80" + body[at:]


@pytest.mark.parametrize("content_type", ["application/rss+xml; charset=utf-8", "text/xml"])
def test_a_few_bad_bytes_leave_a_utf8_document_utf8(
    content_type: str, server: FeedServer, write_config: Any
) -> None:
    items = [
        Item(f"NW{n}", f"宝鸡交警保障道路安全畅通{n}", body=f"<p>正文{n}</p>") for n in "一二三"
    ]
    body = with_bad_bytes(rss(items))
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert decode(body, content_type).chosen_by == "repaired"
    run = run_source(server.set("/bad-bytes.xml", body, content_type=content_type), write_config)
    assert sorted(titles(run).values()) == sorted(f"宝鸡交警保障道路安全畅通{n}" for n in "一二三")
    contents = {row["code"]: row["content"] for row in run.entries}
    assert "\ufffd" in contents["NW二"] and "正文二" in contents["NW二"]
    assert contents["NW一"] == "<p>正文一</p>"
    assert "宝鸡交警" in run.files["all.xml"].decode("utf-8")


def first_text(text: str, *names: str) -> str:
    for name in names:
        found = re.search(rf"<{name}>\s*(.*?)\s*</{name}>", text, re.S)
        if found:
            return found.group(1)
    raise AssertionError(f"none of {names}")


@pytest.mark.parametrize("name", sorted(CHARDET_CODECS))
def test_feedparsers_chardet_documents_are_read_in_their_encoding(
    name: str, server: FeedServer, write_config: Any
) -> None:
    """feedparser's illformed/chardet documents declare no encoding anywhere."""
    body = fpcorpus.documents()[f"illformed/chardet/{name}"]
    expected = body.decode(CHARDET_CODECS[name])
    decoded = decode(body, "application/xml")
    assert decoded.text == expected, decoded.encoding
    run = run_source(server.set("/" + name, body, content_type="application/xml"), write_config)
    item = expected[expected.find("<item>") :] if "<item>" in expected else ""
    item = item or expected[expected.find("<entry>") :] if "<entry>" in expected else item
    if not item:  # a feed without entries: its title
        assert run.source["feed_title"] == first_text(expected, "title")
        return
    (row,) = run.entries
    words = re.sub(r"<[^>]+>|&[#\w]+;", " ", first_text(item, "title", "description", "summary"))
    stored = row["title"] + " " + re.sub(r"<[^>]+>|&[#\w]+;", " ", row["content"])
    for word in words.split()[:8]:
        assert word in stored, (word, stored[:200])


def test_short_chinese_without_a_declaration_is_read_as_gb18030_first(
    server: FeedServer, write_config: Any
) -> None:
    # Six Chinese characters read nearly as well in Johab, EUC-KR or Big5 to a detector.
    body = rss([Item("NW1", "凝神聚力 镕")], declare="").replace(b'encoding=""', b"")
    body = body.decode("utf-8").encode("gbk")
    run = run_source(server.set("/gbk.xml", body, content_type="text/xml"), write_config)
    assert list(titles(run).values()) == ["凝神聚力 镕"]


# --- dates ---------------------------------------------------------------------------------


@PATHS
def test_an_offset_no_zone_has_falls_back_and_every_raw_date_is_kept(
    path: str, server: FeedServer, write_config: Any
) -> None:
    items = [
        Item("NW1", "二十五小时", date="Fri, 24 Dec 2021 03:00:26 +2500"),
        Item("NW2", "负十四点半", date="2021-12-24T10:30:00-14:30"),
        Item("NW3", "东八区", date="Fri, 24 Dec 2021 03:00:26 +0800"),
        Item("NW4", "基里巴斯", date="Fri, 24 Dec 2021 03:00:26 +1400"),
    ]
    clock = Clock()
    run = run_source(server.set(f"/dates-{path}.xml", feed_for(path, items)), write_config, clock)
    rows = {row["code"]: row for row in run.entries}
    first_seen = clock.now.strftime("%Y-%m-%dT%H:%M:%S")
    assert rows["NW1"]["published"].startswith(first_seen)
    assert rows["NW2"]["published"].startswith(first_seen)
    assert rows["NW3"]["published"].startswith("2021-12-23T19:00:26")
    assert rows["NW4"]["published"].startswith("2021-12-23T13:00:26")
    assert {code: row["published_raw"] for code, row in rows.items()} == {
        item.code: item.date for item in items
    }


def test_a_database_from_before_raw_dates_upgrades(
    tmp_path: Path, server: FeedServer, write_config: Any
) -> None:
    """A store from before raw dates (schema 12) upgrades in place: an entry stored
    before has none (NULL); what the next poll reads has them."""
    database = tmp_path / "old.db"
    conn = sqlite3.connect(database, isolation_level=None)
    for migration in MIGRATIONS[:BEFORE_RAW_DATES]:
        migration(sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA user_version = {BEFORE_RAW_DATES}")
    conn.execute(
        """INSERT INTO entries (code, code_rule, title, link, published, updated, first_seen,
             source_id) VALUES ('OLD', 'guid', '旧', 'http://x.cn/old', '2021-01-01T00:00:00Z',
             '2021-01-01T00:00:00Z', '2021-01-01T00:00:00Z', 's')"""
    )
    conn.close()
    items = [Item("NW1", "新", date="Fri, 24 Dec 2021 03:00:26 +0800")]
    url = server.set("/upgrade.xml", rss(items))
    run = run_source(url, write_config, settings={"database": str(database)})
    rows = {row["code"]: row for row in run.entries}
    assert (rows["OLD"]["published_raw"], rows["OLD"]["updated_raw"]) == (None, None)
    assert (rows["NW1"]["published_raw"], rows["NW1"]["updated_raw"]) == (items[0].date, "")
    with SqliteStore(database) as store:
        assert store.schema_version == len(MIGRATIONS)


# --- display hazards -----------------------------------------------------------------------

ZALGO = "Z" + "\u0301\u0316\u0327" * 100 + "algo"
HAZARDS = {
    "NW1": ("\u202e新闻标题\u202c", "新闻标题"),  # a right-to-left override
    "NW2": ("\u2067隔离\u2069与\u2066嵌入\u2069", "隔离与嵌入"),  # isolates
    "NW3": ("零\u200b宽\u2060字\ufeff符", "零宽字符"),  # zero-width characters, a stray BOM
    "NW4": (ZALGO, "Z" + "\u0301\u0316\u0327\u0301\u0316" + "algo"),  # marks cut to five
    "NW5": (
        "\u0645\u0631\u062d\u0628\u0627 \u200fبالعالم",
        "\u0645\u0631\u062d\u0628\u0627 \u200fبالعالم",
    ),
}


@PATHS
def test_display_hazards_are_taken_out_of_titles(
    path: str, server: FeedServer, write_config: Any
) -> None:
    items = [Item(code, title) for code, (title, _) in HAZARDS.items()]
    body = feed_for(path, items).replace(
        b"<item>", b"<item><author>\xe2\x80\xae\xe8\xae\xb0\xe8\x80\x85</author>", 1
    )
    run = run_source(server.set(f"/hazards-{path}.xml", body), write_config)
    assert titles(run) == {code: shown for code, (_, shown) in HAZARDS.items()}
    published = {e.findtext(f"{A}title") for e in run.atom_entries()}
    assert published == {shown for _, shown in HAZARDS.values()}
    assert {row["author"] for row in run.entries} == {"记者", ""}


# --- titles --------------------------------------------------------------------------------

TITLES = {
    "NW1": ("<独家>报道", "<独家>报道"),  # written &lt;独家&gt;报道 in the RSS
    "NW2": ("如果 a<b 且 b>c", "如果 a<b 且 b>c"),
    "NW3": ("&lt;b&gt;双重转义&lt;/b&gt;", "<b>双重转义</b>"),  # escaped twice: text
    "NW4": ("<b>粗</b>体", "粗体"),  # markup: removed
    "NW5": ("换<br>行", "换行"),  # a real tag, without a closing one
    "NW6": ("AT&T 与 <script>x()</script>", "AT&T 与 x()"),
}


@PATHS
def test_escaped_text_in_titles_is_text(path: str, server: FeedServer, write_config: Any) -> None:
    items = [Item(code, title) for code, (title, _) in TITLES.items()]
    body = feed_for(path, items)
    assert b"<title>&lt;\xe7\x8b\xac\xe5\xae\xb6&gt;" in body  # &lt;独家&gt;报道
    run = run_source(server.set(f"/titles-{path}.xml", body), write_config)
    assert titles(run) == {code: shown for code, (_, shown) in TITLES.items()}
    published = {e.findtext(f"{A}title") for e in run.atom_entries()}
    assert published == {shown for _, shown in TITLES.values()}
    assert b"&lt;\xe7\x8b\xac\xe5\xae\xb6&gt;" in run.files["all.xml"]  # escaped in XML


# --- a file: source's relative links -------------------------------------------------------


def test_a_file_sources_relative_links_are_kept(tmp_path: Path, write_config: Any) -> None:
    body = (
        '<p>更多：<a href="/more.html">详情</a>，<a href="next/2.html">下一篇</a>'
        '<img src="img/1.jpg" alt="图"> <a href="http://x.cn/a">绝对</a>'
        '<a href="javascript:alert(1)">坏</a></p>'
    )
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss([Item("NW1", "本地文件", body=body)]))
    run = run_source(feed.as_uri(), write_config)
    (row,) = run.entries
    for kept in (
        'href="/more.html"',
        'href="next/2.html"',
        'src="img/1.jpg"',
        'href="http://x.cn/a"',
    ):
        assert kept in row["content"]
        assert kept in (run.atom_entries()[0].findtext(f"{A}content") or "")
    assert "javascript" not in row["content"]
