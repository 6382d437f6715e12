"""RSS 2.0 output: a .rss beside every .xml and .json (archive pages too), valid against
the RSS Advisory Board's profile (tests/rsscheck.py), read by feedparser as the Atom
version of the same feed reads, and read by Node's rss-parser as by feedparser; served
like the others; chosen with the `formats` setting."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from click.testing import CliRunner
from lxml import etree, html

from aggregator.cli.main import main
from aggregator.config.loader import load_config
from aggregator.errors import ConfigError
from aggregator.models import Enclosure
from aggregator.parse import iri
from aggregator.publish.publisher import Publisher
from aggregator.serve.server import FeedServer
from aggregator.store.sqlite import SqliteStore
from tests import nodereader, rsscheck
from tests.publishing import SOURCES, START, Site, record, site
from tests.test_publish import fill
from tests.test_serve import get

ATOM_NS = "{http://www.w3.org/2005/Atom}"


def varied(s: Site) -> None:
    """Entries with everything an item can hold: a summary, enclosures, markup and
    ampersands in titles, controls, no link (and from fill(), entries carried by both
    sources, so with the categories and tags of both)."""
    fill(s, 9)
    s.add(
        "yaowen",
        record(
            100,
            summary="<b>摘要</b> & more",
            enclosures=(
                Enclosure("http://finews.example.cn/a.mp3", "audio/mpeg", 12345),
                Enclosure("http://finews.example.cn/b.jpg", "image/jpeg", -1),
            ),
            content=(
                '<p onclick="x()">正文 <a href="http://x.cn/r">链</a>\x0b</p>'
                "<script>alert(1)</script> 😀"
            ),
            title="标题\x01 <b>&amp;</b> ]]> a<b 且 AT&T",
        ),
        record(101, link="", author="编辑 <李>"),
        record(103, link="http://例子.中国/新闻 1.html"),
    )
    s.add("jiaotong", record(102, title="同一篇 & 交通"))


@pytest.fixture
def published(write_config: Any) -> Iterator[Site]:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        varied(s)
        s.publisher.publish()
        yield s


def documents(s: Site, suffix: str) -> list[str]:
    return sorted(name for name in s.files() if name.endswith(suffix))


def test_every_feed_and_archive_page_has_a_valid_rss_version(published: Site) -> None:
    s = published
    atom = documents(s, ".xml")
    rss = documents(s, ".rss")
    assert [n.removesuffix(".rss") for n in rss] == [n.removesuffix(".xml") for n in atom]
    assert {"all.rss", "category/sanqindushibao.rss", "tag/jiaotong.rss"} <= set(rss)
    assert any(n.startswith("archive/") for n in rss)
    for name in rss:
        data = (s.out / name).read_bytes()
        assert not rsscheck.problems(data), (name, rsscheck.problems(data))
        channel = etree.fromstring(data).find("channel")
        assert channel is not None
        self_links = [e for e in channel.findall(f"{ATOM_NS}link") if e.get("rel") == "self"]
        assert [e.get("href") for e in self_links] == [s.publisher.url_of(name)]


def test_the_checker_catches_what_the_profile_forbids(published: Site) -> None:
    good = (published.out / "all.rss").read_bytes()
    assert rsscheck.problems(good) == []
    breakages = {
        b"<pubDate>Fri, ": b"<pubDate>Sat, ",  # a wrong day of the week
        b" 2021 ": b" 21 ",  # a two-digit year
        b'isPermaLink="false"': b'isPermaLink="true"',  # a urn:uuid: is no page
        b'rel="self" type="application/rss+xml"': b'rel="me"',
        b' length="12345"': b"",
        b"&#x3C;b&#x3E;": b"&lt;b&gt;",  # plain text escaped as if it were markup
        b"<title>": b"<title>\xc2\x85",  # a C1 control (NEL)
    }
    for old, new in breakages.items():
        assert old in good, old
        assert rsscheck.problems(good.replace(old, new, 1)), old


def _seconds(parsed: Any) -> int:
    return calendar.timegm(parsed)


def _alternate(entry: Any) -> str | None:
    """The entry's link to its page (feedparser makes an Atom entry's id its link when
    it has none, so links are compared as rel="alternate" ones)."""
    pages = [link.href for link in entry.get("links", []) if link.rel == "alternate"]
    return iri.ascii_link(pages[0]) if pages else None  # RSS has no IRIs


def _enclosures(entry: Any) -> list[tuple[str, str, str]]:
    return [(e.href, e.type, e.length) for e in entry.get("enclosures", [])]


def _entries(data: bytes) -> list[Any]:
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return list(parsed.entries)


def test_feedparser_reads_the_rss_as_it_reads_the_atom(published: Site) -> None:
    s = published
    compared = 0
    for name in documents(s, ".rss"):
        rss = feedparser.parse((s.out / name).read_bytes())
        atom = feedparser.parse(
            (s.out / name.removesuffix(".rss")).with_suffix(".xml").read_bytes()
        )
        assert not rss.bozo and not atom.bozo, name
        assert rss.version == "rss20"
        assert rss.feed.title == atom.feed.title and rss.feed.subtitle == atom.feed.subtitle
        assert len(rss.entries) == len(atom.entries), name
        for mine, theirs in zip(rss.entries, atom.entries, strict=True):
            assert mine.id == theirs.id
            assert mine.title == theirs.title
            assert _alternate(mine) == _alternate(theirs)
            assert _seconds(mine.published_parsed) == _seconds(theirs.published_parsed)
            assert mine.content[0].value == theirs.content[0].value
            if "summary" in theirs and theirs.summary != theirs.content[0].value:
                assert mine.summary == theirs.summary  # a summary of its own
            assert mine.get("author") == (theirs.get("author") or theirs.source.get("author"))
            assert [t.term for t in mine.tags] == [t.label for t in theirs.tags]
            assert [t.scheme for t in mine.tags] == [t.scheme for t in theirs.tags]
            assert _enclosures(mine) == _enclosures(theirs)[:1]
            compared += 1
    assert compared > 40


def test_what_rss_shows_of_a_tricky_entry(write_config: Any) -> None:
    with site(write_config) as s:
        varied(s)
        s.publisher.publish()
        entries = {e.id: e for e in _entries((s.out / "source/yaowen.rss").read_bytes())}
    tricky = next(e for e in entries.values() if "摘要" in e.get("summary", ""))
    assert tricky.title == "标题 <b>&amp;</b> ]]> a<b 且 AT&T"  # as stored: text
    assert "<script>" not in tricky.content[0].value
    assert 'href="http://x.cn/r"' in tricky.content[0].value
    assert [e.href for e in tricky.enclosures] == ["http://finews.example.cn/a.mp3"]
    linkless = next(e for e in entries.values() if e.get("author") == "编辑 <李>")
    assert "link" not in linkless
    # An entry without a summary is described by the first words of its text.
    plain = next(e for e in entries.values() if e.title.startswith("第2条"))
    assert plain.summary == "正文 2。" and plain.content[0].value == "<p>正文 2。</p>"


@pytest.fixture(scope="session")
def rss_parser() -> list[str]:
    return nodereader.find_reader()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def test_node_rss_parser_reads_what_feedparser_reads(
    published: Site, rss_parser: list[str]
) -> None:
    s = published
    names = documents(s, ".rss")
    feeds = nodereader.read(rss_parser, [s.out / name for name in names])
    compared = 0
    for name, theirs in zip(names, feeds, strict=True):
        ours = feedparser.parse((s.out / name).read_bytes())
        assert theirs["title"] == ours.feed.title and theirs["link"] == ours.feed.link
        assert theirs["description"] == ours.feed.subtitle
        assert len(theirs["items"]) == len(ours.entries), name
        for item, entry in zip(theirs["items"], ours.entries, strict=True):
            assert item["title"] == entry.title
            assert item.get("link") == entry.get("link")
            assert item["guid"] == entry.id
            published_at = datetime.fromtimestamp(_seconds(entry.published_parsed), UTC)
            assert _utc(item["isoDate"]) == published_at
            assert item["contentEncoded"] == entry.content[0].value
            assert item["content"] == entry.summary
            assert item.get("creator") == entry.get("author")
            assert [c["_"] for c in item.get("categories", [])] == [t.term for t in entry.tags]
            enclosure = item.get("enclosure")
            given = (
                [(enclosure["url"], enclosure["type"], enclosure["length"])] if enclosure else []
            )
            assert given == _enclosures(entry)
            compared += 1
    assert compared > 40


def test_rss_is_served_with_its_media_type_etags_and_304(tmp_path: Path, write_config: Any) -> None:
    output = tmp_path / "project" / "feeds"
    output.mkdir(parents=True)
    server = FeedServer(("127.0.0.1", 0), output)
    server.start()
    try:
        config = load_config(write_config(SOURCES, base_url=server.url))
        with SqliteStore(config.settings.database) as store:
            store.sync_sources(config.sources)
            s = Site(config, store)
            s.add("jiaotong", record(3))
            s.publisher.publish()
            status, headers, body = get(server, "/tag/jiaotong.rss")
            assert status == 200
            assert headers["content-type"] == "application/rss+xml; charset=utf-8"
            assert len(feedparser.parse(body).entries) == 1
            etag = headers["etag"]
            assert get(server, "/tag/jiaotong.rss", **{"If-None-Match": etag})[0] == 304
            since = headers["last-modified"]
            assert get(server, "/tag/jiaotong.rss", **{"If-Modified-Since": since})[0] == 304
            s.publisher.publish(s.add("jiaotong", record(4)))
            status, headers, _ = get(server, "/tag/jiaotong.rss", **{"If-None-Match": etag})
            assert status == 200 and headers["etag"] != etag
    finally:
        server.shutdown()
        server.server_close()


def _discovered(index: bytes) -> list[tuple[str, str, str]]:
    page = html.fromstring(index)
    return [
        (link.get("type", ""), link.get("title", ""), link.get("href", ""))
        for link in page.findall(".//head/link")
        if link.get("rel") == "alternate"
    ]


def test_index_and_opml_list_every_format_and_opml_points_at_atom(published: Site) -> None:
    s = published
    url = s.publisher.url_of
    found = _discovered((s.out / "index.html").read_bytes())
    title = s.config.settings.title
    assert found[:3] == [
        ("application/atom+xml", title, url("all.xml")),
        ("application/feed+json", f"{title} (JSON Feed)", url("all.json")),
        ("application/rss+xml", f"{title} (RSS 2.0)", url("all.rss")),
    ]
    assert len(found) == 3 * len(documents(s, ".xml")) - 3 * len(
        [n for n in documents(s, ".xml") if n.startswith("archive/")]
    )
    text = html.fromstring((s.out / "index.html").read_bytes()).text_content()
    assert "Atom、JSON Feed、RSS 2.0" in text
    opml = etree.fromstring((s.out / "feeds.opml").read_bytes())
    subscribed = [o.get("xmlUrl") for o in opml.iter("outline") if o.get("xmlUrl")]
    assert subscribed and all(u.endswith(".xml") for u in subscribed)


def test_the_formats_setting_picks_formats_and_the_first_is_opmls(write_config: Any) -> None:
    with site(write_config, formats=["rss", "atom"]) as s:
        fill(s, 3)
        s.publisher.publish()
        files = set(s.files())
        assert {"all.rss", "all.xml"} <= files and not any(n.endswith(".json") for n in files)
        opml = etree.fromstring((s.out / "feeds.opml").read_bytes())
        assert all(o.get("xmlUrl", ".rss").endswith(".rss") for o in opml.iter("outline"))
        found = _discovered((s.out / "index.html").read_bytes())
        assert [kind for kind, _, _ in found[:2]] == ["application/rss+xml", "application/atom+xml"]
        # The Atom documents link no alternate: RSS is not announced, JSON is not published.
        atom = etree.fromstring((s.out / "all.xml").read_bytes())
        alternates = [
            e.get("type") for e in atom.findall(f"{ATOM_NS}link") if e.get("rel") == "alternate"
        ]
        assert alternates == ["text/html"]
        assert s.publisher.feed_urls()[0].endswith(".rss")


def test_adding_rss_leaves_the_atom_and_json_bytes_as_they_were(
    write_config: Any, tmp_path: Path
) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        varied(s)
        s.publisher.publish()
        everything = s.files()
        settings = replace(s.config.settings, formats=("atom", "json"), output_dir=tmp_path / "two")
        Publisher(replace(s.config, settings=settings), s.store).publish()
        before = {
            str(p.relative_to(tmp_path / "two")): p.read_bytes()
            for p in (tmp_path / "two").rglob("*")
            if p.is_file() and p.suffix in (".xml", ".json")
        }
    assert before and before == {
        n: d for n, d in everything.items() if n.endswith((".xml", ".json"))
    }


def test_an_unknown_format_is_a_config_error_everywhere(write_config: Any) -> None:
    path = write_config(SOURCES, formats=["atom", "rss1"])
    config = load_config(path)
    with SqliteStore(config.settings.database) as store, pytest.raises(ConfigError) as caught:
        Publisher(config, store)
    assert "settings.formats" in str(caught.value) and "'rss1'" in str(caught.value)
    result = CliRunner().invoke(main, ["config", "check", "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown format 'rss1' (known: atom, json, rss)" in result.output
    result = CliRunner().invoke(main, ["publish", "--config", str(path)])
    assert result.exit_code == 2 and "rss1" in result.output
    with pytest.raises(ConfigError):
        load_config(write_config(SOURCES, formats=[]))


def test_dates_are_rfc_822_with_four_digit_years_in_utc(write_config: Any) -> None:
    early = datetime(999, 3, 1, 12, 0, tzinfo=UTC)  # a year of three digits stays four wide
    with site(write_config) as s:
        s.add("yaowen", record(1, when=early), record(2, when=START + timedelta(days=400)))
        s.publisher.publish()
        data = (s.out / "source/yaowen.rss").read_bytes()
    assert b"<pubDate>Fri, 01 Mar 0999 12:00:00 +0000</pubDate>" in data
    assert not rsscheck.problems(data)
