"""Links and ids taken from sources are republished as URIs, whatever the source sent.

Every published document passes the RFC 4287 schema and the W3C feed validator's
URI rules (tests/atomcheck.py: InvalidUUID for a malformed urn:uuid:, no raw space
or other character a URI cannot hold), while the store keeps what the source said.
Served by a real HTTP server on 127.0.0.1; a property test writes arbitrary strings
into every stored field that ends up as a URI in a published document.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from aggregator.cli.main import main
from aggregator.models import Enclosure, ParsedFeed
from aggregator.parse import iri
from aggregator.publish.publisher import ID_NAMESPACE
from aggregator.store.records import PollRecord
from tests import atomcheck, jsonfeedcheck, rsscheck
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.pipeline import A, run_source
from tests.publishing import record, site

BAD_UUID = "urn:uuid:6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21a"  # one hex digit too many
OUR_SOURCE_ID = f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'source:s')}"


def atom_feed(feed_id: str, entry_id: str, link: str = "", content: str = "正文") -> bytes:
    alternate = f'<link rel="alternate" href="{link}"/>' if link else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>来源</title><id>{feed_id}</id><updated>2021-12-24T03:00:26Z</updated>"
        f"<entry><title>第一条</title><id>{entry_id}</id>{alternate}"
        "<updated>2021-12-24T03:00:26Z</updated>"
        f'<content type="html">{content}</content></entry></feed>'
    ).encode()


def source_ids(root: etree._Element) -> set[str]:
    return {e.findtext(f"{A}source/{A}id") or "" for e in root.findall(f"{A}entry")}


def alternates(root: etree._Element) -> list[str]:
    return [href for entry in root.findall(f"{A}entry") for href in alternates_of(entry)]


def alternates_of(entry: etree._Element) -> list[str]:
    links = entry.findall(f"{A}link")
    return [link.get("href", "") for link in links if link.get("rel", "alternate") == "alternate"]


def test_a_malformed_urn_uuid_feed_id_is_replaced_by_our_own(
    server: FeedServer, write_config: Any
) -> None:
    url = server.set("/bad-id.atom", atom_feed(BAD_UUID, "tag:example.cn,2021:1"))
    run = run_source(url, write_config)  # every document passes the checks
    assert atomcheck.w3c_uri_problem(BAD_UUID, full=True) == f"InvalidUUID: {BAD_UUID!r}"
    for path in ("all.xml", "source/s.xml"):
        assert source_ids(run.atom(path)) == {OUR_SOURCE_ID}, path
    item = json.loads(run.files["all.json"])["items"][0]
    assert item["_source"]["id"] == OUR_SOURCE_ID
    assert run.source["feed_id"] == BAD_UUID  # the original is kept


def test_a_well_formed_feed_id_is_kept_in_canonical_form(
    server: FeedServer, write_config: Any
) -> None:
    given_id = "URN:UUID:6F1C9A52-3B1E-5D4A-9A57-2C4B0E7F1D21"
    url = server.set("/good-id.atom", atom_feed(given_id, "tag:example.cn,2021:1"))
    run = run_source(url, write_config)
    assert source_ids(run.atom()) == {given_id.lower()}


def test_an_id_with_a_space_makes_an_encoded_link(server: FeedServer, write_config: Any) -> None:
    # An RSS guid is a permalink unless it says otherwise: "Correct Value" becomes a
    # link joined onto the feed's URL, with its raw space.
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>有空格的 guid</title><guid>Correct Value</guid>"
        "<description>正文</description></item></channel></rss>"
    ).encode()
    url = server.set("/space.xml", body)
    run = run_source(url, write_config)
    assert alternates(run.atom()) == [server.url("/Correct%20Value")]
    assert json.loads(run.files["all.json"])["items"][0]["url"] == server.url("/Correct%20Value")
    assert [row["link"] for row in run.entries] == [server.url("/Correct Value")]  # as sent


def test_look_alike_hosts_are_shown_in_idna_and_other_scripts_are_kept(
    server: FeedServer, write_config: Any
) -> None:
    lookalike = "http://pаypаl.com/login"  # Cyrillic а
    items = [
        Item("NW1", "仿冒链接", body=f'<p><a href="{lookalike}">登录</a></p>'),
        Item("NW2", "中文域名", body="<p>正文</p>"),
    ]
    body = rss(items).replace(
        b"http://finews.example.cn/html_News/NewsShare.html?infoCode=NW1", lookalike.encode()
    )
    body = body.replace(
        b"http://finews.example.cn/html_News/NewsShare.html?infoCode=NW2",
        "http://例子.中国/新闻/2.html".encode(),
    )
    run = run_source(server.set("/idn.xml", body), write_config)
    entries = {e.findtext(f"{A}title"): e for e in run.atom_entries()}
    [spoofed] = alternates_of(entries["仿冒链接"])
    assert spoofed == "http://xn--pypl-53dc.com/login"
    assert 'href="http://xn--pypl-53dc.com/login"' in (
        entries["仿冒链接"].findtext(f"{A}content") or ""
    )
    assert alternates_of(entries["中文域名"]) == ["http://例子.中国/%E6%96%B0%E9%97%BB/2.html"]
    assert {row["link"] for row in run.entries} == {lookalike, "http://例子.中国/新闻/2.html"}


def test_export_opml_republishes_the_feed_link_as_a_uri(
    server: FeedServer, write_config: Any
) -> None:
    body = rss([Item("NW1", "标题")], link="http://finews.example.cn/三秦 要闻/")
    run = run_source(server.set("/opml-link.xml", body), write_config)
    config_path = Path(run.config.settings.database).parent.parent / "config" / "sources.toml"
    result = CliRunner().invoke(main, ["export-opml", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    outline = etree.fromstring(result.output.encode()).find(".//outline[@xmlUrl]")
    assert outline is not None
    expected = "http://finews.example.cn/%E4%B8%89%E7%A7%A6%20%E8%A6%81%E9%97%BB/"
    assert outline.get("htmlUrl") == expected


def test_a_host_in_another_script_with_characters_no_host_has_gives_no_link() -> None:
    # IDNA encodes "}" and "%" as they are: the host in ASCII is checked as an ASCII one is.
    for value in ("http://%41.例子%41%41}%41/", "http://a}é.cn/x", "http://é%41.cn/"):
        assert iri.link(value) == "" and iri.ascii_link(value) == ""
        assert iri.feed_id(value) is None
    assert iri.link("http://a}.cn/x") == ""  # as in ASCII
    assert iri.link("http://例子.中国/a") == "http://例子.中国/a"


def test_an_id_with_an_ipv6_host_is_not_kept_as_the_id() -> None:
    # The validator's rule for an id (a full URI) has no "[": a link may have one.
    assert iri.feed_id("http://[::1]/feed") is None
    assert iri.link("http://[::1]/feed") == "http://[::1]/feed"


# --- any string at all -------------------------------------------------------------------

PIECES = [
    *["http://", "https://", "HTTP://", "urn:uuid:", "urn:", "URN:isbn:", "tag:", ",2021:"],
    *["x.cn", "Example.COM", "例子.中国", "pаypаl.com", "xn--", "xn--zz", ":8080", ":99999"],
    *["[::1]", "[", "]", "/", "/a b", " ", "%", "%zz", "%41", "%E4%B8", "?", "#", "&", "@"],
    *[":", "..", ".", '"', "'", "<", ">", "\\", "^", "`", "{", "|", "}", "\t", "\n", "\x00"],
    *["\x7f", "\x85", "\u202e", "\u200b", "\ufeff", "\ufffe", "é", "路径", "a" * 70],
    *["6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21", "6F1C9A52-3B1E-5D4A-9A57-2C4B0E7F1D21a"],
    *["Correct Value", "mailto:a@b.cn", "javascript:x", "file:///etc/passwd", "//x.cn/a"],
]
uri_strings = st.lists(st.sampled_from(PIECES), max_size=8).map("".join) | st.text(max_size=30)
NUMBERS = itertools.count(1)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    link=uri_strings,
    enclosure=uri_strings,
    feed_link=uri_strings,
    feed_id=uri_strings,
    moved_to=uri_strings,
)
# User info keeps its case: an escape in it is canonical in upper case.
@example(link="", enclosure="", feed_link="", feed_id="", moved_to="http://\x7f@http://")
# A host in another script holding characters no host has (found by this test).
@example(link="http://%41.例子%41%41}%41", enclosure="", feed_link="", feed_id="", moved_to="")
@example(link="", enclosure="", feed_link="", feed_id="http://[::1]", moved_to="")
def test_any_string_in_any_republished_uri_field_gives_valid_documents(
    write_config: Any, link: str, enclosure: str, feed_link: str, feed_id: str, moved_to: str
) -> None:
    number = next(NUMBERS)
    entry = record(number, link=link, enclosures=(Enclosure(enclosure, "audio/mpeg", 10),))
    with site(write_config) as s:
        source = s.config.source("yaowen")
        assert source is not None
        s.store.record_poll(source.id, PollRecord(moved_to=moved_to))
        feed = ParsedFeed("rss20", "要闻", feed_link, feed_id, (entry,))
        s.now += timedelta(minutes=1)
        s.store.ingest(source, feed, [entry], s.now)
        written = s.publisher.publish()
        for path in written:
            if path.suffix == ".xml":
                found = atomcheck.problems(path.read_bytes())
            elif path.suffix == ".json":
                found = jsonfeedcheck.problems(path.read_bytes())
            elif path.suffix == ".rss":
                found = rsscheck.problems(path.read_bytes())
            else:
                continue
            assert not found, f"{path.name}:\n" + "\n".join(found)
        page = etree.fromstring((s.out / "source" / "yaowen.xml").read_bytes())
        shown = [e for e in page.findall(f"{A}entry") if e.findtext(f"{A}title") == entry.title]
        assert len(shown) == 1
        # A link is shown when it can be made a URI, and then as iri.link makes it.
        assert alternates_of(shown[0]) == ([iri.link(link)] if iri.link(link) else [])
