"""Published feeds: valid Atom and JSON Feed, history paging, OPML, index, incremental writes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree, html

from aggregator.models import Enclosure
from aggregator.publish.feedpages import Paging, distinct_updated, pages_to_render, shown_updated
from aggregator.publish.publisher import Publisher, entry_id, feed_info
from aggregator.store.records import FeedKey
from tests import atomcheck, jsonfeedcheck, rsscheck
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.publishing import START, A, Site, entry_ids, links, record, site

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
FH = "{http://purl.org/syndication/history/1.0}"
KEYS: list[FeedKey] = [
    ("all", ""),
    ("category", "三秦都市报"),
    ("category", "陕西交通"),
    ("tag", "三秦都市报新闻"),
    ("tag", "交通"),
    ("source", "yaowen"),
    ("source", "jiaotong"),
]


def fill(s: Site, count: int, first: int = 0, batch: int = 4) -> None:
    """count entries, alternating sources, in polls of `batch`; every 5th in both."""
    numbers = list(range(first, first + count))
    for start in range(0, len(numbers), batch):
        chunk = numbers[start : start + batch]
        s.add("yaowen", *[record(n) for n in chunk if n % 2 == 0 or n % 5 == 0])
        s.add("jiaotong", *[record(n) for n in chunk if n % 2 == 1 or n % 5 == 0])


def check_all(s: Site) -> dict[str, bytes]:
    """Every published file is valid in its format; returns them."""
    files = s.files()
    assert files
    for name, data in files.items():
        if name.endswith(".xml"):
            problems = atomcheck.problems(data)
            assert not problems, f"{name}:\n" + "\n".join(problems)
        elif name.endswith(".json"):
            problems = jsonfeedcheck.problems(data)
            assert not problems, f"{name}:\n" + "\n".join(problems)
        elif name.endswith(".rss"):
            problems = rsscheck.problems(data)
            assert not problems, f"{name}:\n" + "\n".join(problems)
    return files


def walk(s: Site, path: str, rel: str = "prev-archive") -> list[list[str]]:
    """Entry ids document by document, following rel from the current document."""
    url: str | None = s.publisher.url_of(path)
    pages = []
    while url:
        root = etree.fromstring(s.read_url(url))
        pages.append(entry_ids(root))
        found = links(root, rel)
        url = found[0] if found else None
        assert len(pages) < 100
    return pages


def codes_of(s: Site, key: FeedKey) -> set[str]:
    return {entry_id(a.code) for a in s.store.articles(key, 10_000)}


# --- pure parts ---------------------------------------------------------------------


def test_paging_keeps_at_least_n_current_and_archives_only_full_pages() -> None:
    assert Paging(0, 5, 4).archived == 0
    assert Paging(8, 5, 4).archived == 0  # 8 - 5 = 3 < 4: nothing full to archive
    assert Paging(9, 5, 4).archived == 1
    assert Paging(9, 5, 4).current == (4, 9)
    assert Paging(16, 5, 4).archived == 2
    assert Paging(16, 5, 4).page(2) == (4, 8)
    for total in range(0, 60):
        paging = Paging(total, 5, 4)
        start, stop = paging.current
        assert 5 <= stop - start < 9 or (total < 5 + 4 and (start, stop) == (0, total))
        covered = [p for n in range(1, paging.archived + 1) for p in range(*paging.page(n))]
        assert covered + list(range(start, stop)) == list(range(total))


def test_pages_to_render() -> None:
    paging = Paging(30, 5, 4)  # six archive pages
    assert pages_to_render(paging, [1, 2, 3, 4, 5, 6], rebuild=True) == [1, 2, 3, 4, 5, 6]
    assert pages_to_render(paging, []) == [1, 2, 3, 4, 5, 6]
    assert pages_to_render(paging, [1, 2, 3, 4, 5]) == [5, 6]
    assert pages_to_render(paging, [1, 2, 3, 4, 5, 6]) == [6]
    assert pages_to_render(paging, [1, 3, 4]) == [2, 4, 5, 6]  # missing ones are repaired
    # Pages holding a removed entry's position (positions 0-3 on page 1, 4-7 on page 2...)
    full = [1, 2, 3, 4, 5, 6]
    assert pages_to_render(paging, full, holes=[0, 3, 9, 27]) == [1, 3, 6]


def test_tied_updated_times_are_shown_distinct_and_stable() -> None:
    when = START
    shown = distinct_updated((f"NW{i}", when) for i in range(200))
    assert len(set(shown.values())) == 200
    assert all(when < value < when + timedelta(seconds=1) for value in shown.values())
    # The same entry shows the same time in any document it appears in.
    assert distinct_updated([("NW7", when), ("NW9", when)])["NW7"] == shown["NW7"]
    precise = when + timedelta(microseconds=5)
    assert shown_updated("NW1", precise) == precise
    # Even a clash of fractions is resolved, deterministically.
    clash = shown_updated("NW1", when)
    again = distinct_updated([("NW1", when), ("NW2", clash)])
    assert len(set(again.values())) == 2
    assert again == distinct_updated([("NW2", clash), ("NW1", when)])


# --- Atom everywhere ----------------------------------------------------------------


def test_every_file_is_valid_with_source_authors_enclosures_categories(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2, language="zh-TW") as s:
        fill(s, 13)
        s.add(
            "yaowen",
            record(
                100,
                author="记者 王晨",
                enclosures=(Enclosure("http://finews.example.cn/a.mp3", "audio/mpeg", 12345),),
            ),
        )
        s.publisher.publish()
        files = check_all(s)
    archives = [n for n in files if n.startswith("archive/")]
    assert any(n.startswith("archive/all/") for n in archives)
    for key, path in [
        (("all", ""), "all.xml"),
        (("category", "三秦都市报"), "category/sanqindushibao.xml"),
        (("category", "陕西交通"), "category/shanxi-jiaotong.xml"),
        (("tag", "三秦都市报新闻"), "tag/sanqin-dushibao-xinwen.xml"),
        (("tag", "交通"), "tag/jiaotong.xml"),
        (("source", "yaowen"), "source/yaowen.xml"),
        (("source", "jiaotong"), "source/jiaotong.xml"),
    ]:
        root = etree.fromstring(files[path])
        assert root.get(XML_LANG) == "zh-TW"
        assert root.findtext(f"{A}subtitle")
        assert root.find(f"{FH}archive") is None
        assert links(root, "self") == [s.publisher.url_of(path)]
        if key[0] in ("category", "tag"):
            assert root.findtext(f"{A}title") == key[1]  # the name in its own script
    root = etree.fromstring(files["source/yaowen.xml"])
    entry = root.find(f"{A}entry")
    assert entry is not None and entry.findtext(f"{A}id") == entry_id(record(100).code)
    enclosure = [e for e in entry.findall(f"{A}link") if e.get("rel") == "enclosure"]
    assert [(e.get("href"), e.get("type"), e.get("length")) for e in enclosure] == [
        ("http://finews.example.cn/a.mp3", "audio/mpeg", "12345")
    ]
    source = entry.find(f"{A}source")
    assert source is not None
    assert source.findtext(f"{A}title") == "三秦都市报 · 要闻（原始）"
    assert source.findtext(f"{A}id") == "http://finews.example.cn/yaowen/"
    assert links(source, "alternate") == ["http://finews.example.cn/yaowen/"]
    assert links(source, "self") == ["http://finews.example.cn/yaowen.xml"]
    assert entry.findtext(f"{A}author/{A}name") == "记者 王晨"
    categories = {
        (c.get("term"), c.get("label"), c.get("scheme")) for c in entry.findall(f"{A}category")
    }
    base = s.config.settings.base_url
    assert categories == {
        ("sanqindushibao", "三秦都市报", f"{base}/category/"),
        ("sanqin-dushibao-xinwen", "三秦都市报新闻", f"{base}/tag/"),
    }
    # An entry that names no author is attributed to its source (RFC 4287 4.2.1).
    for entry in etree.fromstring(files["source/jiaotong.xml"]).findall(f"{A}entry"):
        names = entry.findtext(f"{A}author/{A}name") or entry.findtext(
            f"{A}source/{A}author/{A}name"
        )
        assert names in ("记者 王晨", "三秦都市报 · 交通", "三秦都市报 · 要闻")


HOSTILE_TITLE = "标题\x01\x08<script>alert(1)</script> & ]]> \ufffe" + "长" * 5000
HOSTILE_BODY = (
    '<p onclick="x()">正文\x0b</p><script>alert("x")</script><iframe src="http://e.vil/"></iframe>'
    "<![CDATA[ ]]> <p>\u202eRTL\u202c 😀</p>"
)


def test_hostile_content_stored_directly_still_gives_valid_feeds(write_config: Any) -> None:
    with site(write_config) as s:
        s.add(
            "yaowen",
            record(1, title=HOSTILE_TITLE, content=HOSTILE_BODY, summary="<b>\x07摘要</b>"),
            record(2, title="", author="\x00坏\x1f作者", link="javascript:alert(1)", content=""),
        )
        s.publisher.publish()
        files = check_all(s)
    text = files["all.xml"].decode()
    assert "<script" not in text and "&lt;script" not in text.split("<title>")[0]
    parsed = feedparser.parse(files["all.xml"])
    titles = [e.title for e in parsed.entries]
    assert any(t.startswith("标题<script>") and len(t) <= 1000 for t in titles)
    for entry in parsed.entries:
        assert "script" not in entry.content[0].value
        assert "onclick" not in entry.content[0].value
    bad_link = json.loads(files["all.json"])["items"]
    assert all(not item.get("url", "").startswith("javascript") for item in bad_link)


def test_hostile_feed_through_the_pipeline_gives_valid_feeds(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    from aggregator.config.loader import load_config
    from aggregator.fetch.fetcher import Fetcher
    from aggregator.run.poll import poll_source
    from aggregator.store.sqlite import SqliteStore

    body = (
        rss(
            [
                Item("NW202112240300260002", "控制&#1;字符&#x1F;与<b>标签</b>" + "长" * 3000),
                Item("NW202112240300260003", "正常标题", body="<p>a</p><script>alert(1)</script>"),
            ]
        )
        .replace(b"&amp;#1;", b"&#1;")
        .replace(b"&amp;#x1F;", b"&#x1F;")
    )
    url = server.set("/hostile.xml", body)
    config = load_config(
        write_config(
            [
                {
                    "id": "bad",
                    "name": "坏源",
                    "url": url,
                    "category": "测试",
                    "share_code": {"param": "infoCode"},
                }
            ]
        )
    )
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcome = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert outcome.result == "ok", outcome.error
        Publisher(config, store).publish()
        files = check_all(Site(config, store))
    assert b"<script" not in files["all.xml"]


def test_updated_is_distinct_within_every_document(write_config: Any) -> None:
    with site(write_config, feed_entries=20) as s:
        # A feed without dates: every entry gets the poll time, all identical.
        same = START
        s.add("yaowen", *[record(n, when=same) for n in range(12)])
        s.publisher.publish()
        check_all(s)
        docs = {
            name: {
                e.findtext(f"{A}id"): e.findtext(f"{A}updated")
                for e in etree.fromstring(data).findall(f"{A}entry")
            }
            for name, data in s.files().items()
            if name.endswith(".xml")
        }
    shown = docs["all.xml"]
    assert len(set(shown.values())) == 12
    for values in docs.values():
        for entry, updated in values.items():
            assert shown[entry] == updated  # one entry, one time, in every document


# --- history ------------------------------------------------------------------------


def test_walking_prev_archive_reaches_every_entry_exactly_once(write_config: Any) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        fill(s, 23)
        s.publisher.publish()
        fill(s, 9, first=23, batch=3)
        s.publisher.publish(set(KEYS))
        check_all(s)
        for key in KEYS:
            path = s.publisher.url_of("")
            info = feed_info(s.config, key)
            pages = walk(s, info.file(".xml"))
            flat = [i for page in pages for i in page]
            assert len(flat) == len(set(flat)), key
            assert set(flat) == codes_of(s, key), key
            assert 5 <= len(pages[0]) < 9
            assert all(len(page) == 4 for page in pages[1:]), key
            # The same chain forward: next-archive from the oldest page, then current.
            oldest_root = etree.fromstring((s.out / info.archive_file(1, ".xml")).read_bytes())
            assert links(oldest_root, "prev-archive") == []
            assert links(oldest_root, "current") == [s.publisher.url_of(info.file(".xml"))]
            assert path


def test_json_feed_pages_reach_the_same_entries(write_config: Any) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        fill(s, 30)
        s.publisher.publish()
        url: str | None = s.publisher.url_of("all.json")
        ids = []
        while url:
            feed = json.loads(s.read_url(url))
            ids += [item["id"] for item in feed["items"]]
            url = feed.get("next_url")
        atom = [i for page in walk(s, "all.xml") for i in page]
    assert ids == atom


def test_full_archive_pages_never_change(write_config: Any) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        fill(s, 30)
        s.publisher.publish()
        before = {n: d for n, d in s.files().items() if n.startswith("archive/all/")}
        newest = max(int(Path(n).stem) for n in before if n.endswith(".xml"))
        for round_ in range(5):
            fill(s, 3, first=100 + 3 * round_, batch=3)
            s.publisher.publish(set(KEYS))
        s.publisher.publish()  # a full pass rewrites nothing old either
        after = s.files()
        (s.out / "archive/all/2.xml").unlink()
        assert [p.name for p in s.publisher.publish()] == ["2.xml"]  # repaired, same bytes
        assert (s.out / "archive/all/2.xml").read_bytes() == after["archive/all/2.xml"]
        assert s.publisher.publish(rebuild=True) == []
    for name, data in before.items():
        number = int(Path(name).stem)
        if number < newest:
            assert after[name] == data, name
        else:
            # The newest page only gained its next-archive link; its entries are the same.
            if name.endswith(".xml"):
                old, new = etree.fromstring(data), etree.fromstring(after[name])
                assert entry_ids(old) == entry_ids(new)
                assert links(new, "next-archive") and not links(old, "next-archive")


# --- other formats ------------------------------------------------------------------


def test_opml_and_json_feed_list_the_same_feeds_and_entries(write_config: Any) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        fill(s, 12)
        s.publisher.publish()
        files = s.files()
        opml = etree.fromstring(files["feeds.opml"])
        assert opml.get("version") == "2.0"
        outlines = opml.findall(".//outline[@xmlUrl]")
        urls = {o.get("xmlUrl") for o in outlines}
        current = {s.publisher.url_of(n) for n in files if n.endswith(".xml")} - {
            s.publisher.url_of(n) for n in files if n.startswith("archive/")
        }
        assert urls == current == set(s.publisher.feed_urls())
        for outline in outlines:
            atom = etree.fromstring(s.read_url(outline.get("xmlUrl", "")))
            assert outline.get("text") == atom.findtext(f"{A}title")
            assert outline.get("type") == "rss"
            alternate = [
                link.get("href", "")
                for link in atom.findall(f"{A}link")
                if link.get("type") == "application/feed+json"
            ]
            feed = json.loads(s.read_url(alternate[0]))
            assert feed["title"] == atom.findtext(f"{A}title")
            assert feed["feed_url"] == alternate[0]
            assert [i["id"] for i in feed["items"]] == entry_ids(atom)
            assert [i["title"] for i in feed["items"]] == [
                e.findtext(f"{A}title") for e in atom.findall(f"{A}entry")
            ]
            assert [i["date_modified"] for i in feed["items"]] == [
                e.findtext(f"{A}updated") for e in atom.findall(f"{A}entry")
            ]
        groups = [o.get("text") for o in opml.findall("body/outline")]
        assert groups == ["全部", "分类", "标签", "来源"]


def test_index_lists_every_feed_with_autodiscovery(write_config: Any) -> None:
    with site(write_config) as s:
        fill(s, 6)
        s.publisher.publish()
        page = html.fromstring((s.out / "index.html").read_bytes())
        feeds = s.publisher.feed_urls()
    assert page.get("lang") == "zh-CN"
    discovered = {(link.get("type"), link.get("href")) for link in page.findall(".//head/link")}
    for url in feeds:
        assert ("application/atom+xml", url) in discovered
        assert ("application/feed+json", url.removesuffix(".xml") + ".json") in discovered
        assert ("application/rss+xml", url.removesuffix(".xml") + ".rss") in discovered
    assert ("text/x-opml", s.publisher.url_of("feeds.opml")) in discovered
    text = page.text_content()
    for name in ("三秦都市报", "陕西交通", "三秦都市报新闻", "交通", "三秦都市报 · 要闻"):
        assert name in text
    hrefs = {a.get("href") for a in page.findall(".//a")}
    assert len(feeds) == 7 and {"all.xml", "all.json", "all.rss", "feeds.opml"} <= hrefs


# --- incremental and stable ---------------------------------------------------------


def test_one_new_entry_rewrites_only_its_feeds(write_config: Any) -> None:
    with site(write_config, feed_entries=5, archive_entries=4) as s:
        fill(s, 7)
        s.publisher.publish()
        assert s.publisher.publish() == []
        before = s.files()
        # A restarted publisher writes the same bytes: ETags survive restarts.
        assert Publisher(s.config, s.store).publish() == []

        changed = s.add("jiaotong", record(500))
        written = {str(p.relative_to(s.out)) for p in s.publisher.publish(changed)}
        after = s.files()
    feeds = {"all", "category/shanxi-jiaotong", "tag/sanqin-dushibao-xinwen", "tag/jiaotong"}
    feeds.add("source/jiaotong")
    expected = {f"{f}{suffix}" for f in feeds for suffix in (".xml", ".json", ".rss")}
    archived = {n for n in written if n.startswith("archive/")}
    assert written - archived == expected
    # Any archive page written is a new one (or the newest gaining its next link).
    assert all(n not in before or before[n] != after[n] for n in archived)
    untouched = set(before) - written
    assert all(before[n] == after[n] for n in untouched)
    assert "source/yaowen.xml" in untouched and "index.html" in untouched


def test_hub_links_on_every_current_feed(write_config: Any) -> None:
    with site(write_config, hub="http://127.0.0.1:9/hub", feed_entries=5, archive_entries=4) as s:
        fill(s, 12)
        publisher = Publisher(s.config, s.store)
        try:
            publisher.publish()
        finally:
            publisher.close(timeout=0.1)
        files = check_all(s)
    for name, data in files.items():
        if name.endswith(".xml") and not name.startswith("archive/"):
            root = etree.fromstring(data)
            assert links(root, "hub") == ["http://127.0.0.1:9/hub"], name
            assert links(root, "self") == [s.publisher.url_of(name)]
        if name.endswith(".json") and not name.startswith("archive/"):
            assert json.loads(data)["hubs"] == [{"type": "WebSub", "url": "http://127.0.0.1:9/hub"}]


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_subtitles_follow_the_language(write_config: Any, language: str) -> None:
    with site(write_config, language=language) as s:
        fill(s, 2)
        s.publisher.publish()
        subtitle = etree.fromstring((s.out / "tag/jiaotong.xml").read_bytes()).findtext(
            f"{A}subtitle"
        )
    assert subtitle and "交通" in subtitle
    assert ("标签" in subtitle) == (language == "zh-CN")


def test_lone_surrogates_and_controls_never_reach_the_xml(write_config: Any) -> None:
    from aggregator.publish.documents import Document, Link
    from aggregator.publish.formats import REGISTERED
    from aggregator.store.records import StoredArticle

    with site(write_config) as s:
        article = StoredArticle(
            code="NW1",
            title="半个\ud800代理\x00对",
            link="http://finews.example.cn/\ud83d",
            published=START,
            updated=START,
            author="\udfff作者",
            summary="",
            content="<p>\ud800正文\x0c</p>",
            categories=(),
            enclosures=(),
            source_id="yaowen",
        )
        views = s.publisher.views([article])
        info = feed_info(s.config, ("all", ""))
        url = s.publisher.url_of
        doc = Document(
            info,
            views,
            url("all.xml"),
            url("all.xml"),
            (Link(url("all.json"), "application/feed+json"),),
        )
        atomcheck.assert_valid(REGISTERED["atom"].render(doc, s.config))
        jsonfeedcheck.assert_valid(REGISTERED["json"].render(doc, s.config))
        rsscheck.assert_valid(REGISTERED["rss"].render(doc, s.config))
    assert views[0].title == "半个代理对" and views[0].content == "<p>正文</p>"
