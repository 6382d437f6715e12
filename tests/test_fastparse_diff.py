"""The lxml fast path and feedparser give the same normalised feed, on every feed we have.

Each document is parsed twice through parse.feed.parse_xml, once with the fast path and
once with feedparser alone, and the two ParsedFeeds (every entry's title, link,
guid, dates, content, summary, author, categories, enclosures) must be equal.
Documents the fast path declines fall back to feedparser, so they agree trivially;
the test also checks that the fast path really took the well-formed ones. The cases
include tests/corpus (real-world feeds, feedparser's own test documents) and the
hostile and Chinese-encoding documents of tests/test_hostile.py: wherever the fast
path accepts a document, it must agree with feedparser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.parse import fast as fastparse
from aggregator.parse.feed import FieldLimits, parse_fast, parse_xml, prepare
from aggregator.parse.kinds import parse_feed
from bench.corpus import Corpus
from tests import fpcorpus
from tests.feeds import Item, atom, rss
from tests.test_hostile import LAUGHS, QUADRATIC, document, gbk_feed

ROOT = Path(__file__).resolve().parent.parent
SEEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
URL = "http://feeds.example.cn/sanqin/feed.xml"

# name, body, url, content type, fast path expected (None: either is fine)
Case = tuple[str, bytes, str, str, bool | None]


def _samples() -> list[Case]:
    return [
        (path.name, path.read_bytes(), URL, "application/xml", True)
        for path in sorted((ROOT / "config" / "samples").glob("*.xml"))
    ] + [
        (path.name + "-file", path.read_bytes(), "file:" + str(path), "", True)
        for path in sorted((ROOT / "config" / "samples").glob("*.xml"))
    ]


BODY = (
    '<p class="lead" id="x">入冬以来，<a href="/html_News/NewsShare.html?infoCode=NW1&amp;x=1">'
    '详情</a></p><p><IMG SRC="img/1.jpg" ALT="图" width=300></p>'
    '<p><a href="javascript:alert(1)" onclick="x()">坏链接</a><script>alert(1)</script></p>'
    '<video controls src="v.mp4" poster="/p.png"></video><p>AT&amp;T &lt;b&gt; &copy; 2021</p>'
)


def _built() -> list[Case]:
    items = [
        Item("NW202112240300260002", "宝鸡交警多措并举", guid="yaowen-2", body=BODY),
        Item("NW202112240805120001", "西安地铁 &amp; 新线路", guid="", body="<p>正文</p>"),
        Item("NW3", "“冬日暖阳”志愿服务 <b>活动</b>", date="2021年12月24日 10:30", body=""),
        Item("NW4", "标题", date="2021-12-24 10:30:00", categories=["交通", "城市", "交通"]),
        Item(
            "NW5", "Title with\u0085 C1 and caf\u00c3\u00a9", date="Fri, 24 Dec 2021 03:00:26 GMT"
        ),
        Item("NW6", "时区", date="Fri, 24 Dec 2021 03:00:26 CST", link_extra="&from=timeline"),
        Item("NW7", "未来", date="Sat, 24 Dec 2039 03:00:26 +0800"),
        Item("NW8", "坏日期", date="yesterday"),
        # Escaped text, display hazards, a zone no zone has (tests/test_reading_sources.py)
        Item("NW9", "<独家>报道", date="Fri, 24 Dec 2021 03:00:26 +2500"),
        Item("NW10", "如果 a<b 且 b>c", date="2021-12-24T10:30:00-14:30"),
        Item("NW12", "换<br>行 &lt;不是标签&gt;"),
        Item("NW11", "<b>粗</b>\u202e反转\u200b零宽\u2060\ufeff Z" + "\u0301" * 50),
    ]
    return [
        ("rss utf-8", rss(items), URL, "application/rss+xml; charset=utf-8", True),
        ("rss no content type", rss(items), URL, "", True),
        ("rss text/xml", rss(items), URL, "text/xml", True),
        ("rss gbk", rss(items[:4], encoding="gbk"), URL, "application/rss+xml", True),
        ("rss gb2312 declared", rss(items[:2], encoding="gbk", declare="gb2312"), URL, "", True),
        ("rss charset clash", rss(items[:2]), URL, "application/xml; charset=gbk", True),
        ("atom", atom(items), URL, "application/atom+xml", True),
        ("atom no url", atom(items), "", "", True),
        ("rss escaped channel title", rss(items[-3:], title="<独家>频道 a<b"), URL, "", True),
        ("rss markup channel title", rss(items[-3:], title="<b>频道</b>"), URL, "", True),
        (
            "rss with ttl and atom:link",
            rss(
                items[:2],
                extra_channel='<ttl>15</ttl><atom:link xmlns:atom="http://www.w3.org/2005/Atom" '
                'rel="self" href="http://x.example/feed"/>',
            ),
            URL,
            "",
            True,
        ),
    ]


RSS_FULL = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:wfw="http://wellformedweb.org/CommentAPI/">
<channel><title>全字段 &amp; 测试</title><link>/sanqin/</link><description>d</description>
<image><title>logo</title><url>http://x/logo.png</url><link>http://x/</link></image>
<item>
  <title><![CDATA[带 <em>标记</em> 的标题]]></title>
  <link>news/1.html</link>
  <guid>http://finews.example.cn/guid/1</guid>
  <author>editor@example.cn (编辑)</author>
  <category domain="http://x/cat">城市</category><category>城市</category><category></category>
  <comments>http://x/c</comments><wfw:commentRss>http://x/rss</wfw:commentRss>
  <enclosure url="http://x/a.mp3" length="1234" type="audio/mpeg"/>
  <enclosure url="/b.mp3" type="AUDIO/MPEG"/>
  <pubDate>Fri, 24 Dec 2021 03:00:26 +0800</pubDate>
  <description>摘要 &lt;b&gt;粗体&lt;/b&gt;</description>
  <content:encoded><![CDATA[<p>正文 <a href="rel/x.html" title="t">链接</a></p>]]></content:encoded>
</item>
<item>
  <title>guid as link</title>
  <guid>item-2</guid>
  <dc:creator>记者 王</dc:creator><dc:date>2021-12-24T10:00:00+08:00</dc:date>
  <dc:subject>交通</dc:subject>
  <content:encoded><![CDATA[<p>只有正文</p>]]></content:encoded>
  <description><![CDATA[<p>后来的摘要</p>]]></description>
</item>
<item><title>空</title><guid isPermaLink="true"></guid><link>http://a/?q=1&amp;amp;r=2</link></item>
</channel></rss>"""

RDF = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
  xmlns:dc="http://purl.org/dc/elements/1.1/"
  xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel rdf:about="http://x/"><title>RSS 1.0 频道</title><link>http://x/</link>
<description>d</description><items><rdf:Seq><rdf:li rdf:resource="http://x/1"/></rdf:Seq></items>
</channel>
<item rdf:about="http://x/1"><title>第一条</title><link>http://x/1</link>
<description>&lt;p&gt;描述&lt;/p&gt;</description><dc:date>2021-12-24 10:30:00</dc:date>
<dc:creator>张三</dc:creator><dc:subject>民生</dc:subject></item>
<item rdf:about="http://x/2"><title>第二条</title><link>/2</link>
<content:encoded><![CDATA[<p>正文<img src="i.png"></p>]]></content:encoded></item>
</rdf:RDF>"""

ATOM_FULL = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title type="html">Atom &lt;i&gt;全&lt;/i&gt;</title><id>tag:x,2021:feed</id>
<link rel="self" href="http://x/feed.atom"/><updated>2021-12-24T03:00:26+08:00</updated>
<author><name>三秦</name></author>
<entry><title type="text">a &amp;lt; b</title><id>urn:uuid:1</id>
<link href="/alt/1"/><link rel="enclosure" href="/e.mp3" length="10"/>
<link rel="related" href="http://elsewhere/"/>
<published>2021-12-24T03:00:26+08:00</published><updated>2021-12-25T03:00:26Z</updated>
<author><name>记者</name><email>r@example.cn</email></author>
<category term="交通" label="交通运输"/><category label="只有标签"/>
<category term="x">文本</category>
<summary type="html">&lt;p&gt;摘要&lt;/p&gt;</summary>
<content type="html">&lt;p&gt;正文&lt;a href="../up"&gt;上&lt;/a&gt;&lt;/p&gt;</content></entry>
<entry><title>no link</title><id>tag:x,2021:2</id><updated>2021年12月24日 10:30</updated>
<content type="text">纯文本 &lt;不是标签&gt;</content></entry>
<entry><title>summary only</title><id>http://x/3</id><summary>只有摘要</summary>
<link rel="alternate" type="application/atom+xml" href="http://x/3.atom"/></entry>
</feed>"""

DECLINED = [
    (
        "doctype",
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "y">]><rss version="2.0"><channel>'
        b"<title>&x;</title><item><title>t</title></item></channel></rss>",
    ),
    (
        "xml:base",
        b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://a/b/"><title>t</title>'
        b'<entry><id>1</id><link href="c"/></entry></feed>',
    ),
    ("rss 0.91", b'<rss version="0.91"><channel><title>t</title></channel></rss>'),
    ("broken", b'<rss version="2.0"><channel><title>t</channel></rss>'),
    (
        "two authors",
        ATOM_FULL.replace(
            "<author><name>记者", "<author><name>A</name></author><author><name>记者"
        ).encode(),
    ),
    ("xhtml content", ATOM_FULL.replace('type="html">&lt;p&gt;正文', 'type="xhtml">x').encode()),
    (
        "unknown element",
        RSS_FULL.replace("<comments>", "<foo:bar xmlns:foo='u'/><comments>").encode(),
    ),
    (
        "markup in description",
        b'<rss version="2.0"><channel><item><description><p>x</p>'
        b"</description></item></channel></rss>",
    ),
]


def _variants() -> list[Case]:
    cases = [
        ("rss full", RSS_FULL.encode(), URL, "application/rss+xml", True),
        ("rss full gbk", RSS_FULL.replace("utf-8", "gbk").encode("gbk"), URL, "", True),
        ("rdf", RDF.encode(), URL, "application/rdf+xml", True),
        ("atom full", ATOM_FULL.encode(), URL, "application/atom+xml", True),
        ("atom full file url", ATOM_FULL.encode(), "file:/tmp/x.atom", "", True),
    ]
    # Markup feedparser's own relative-URI pass would have read its own way ('>' in a
    # quoted value): both paths now hand it to the sanitizer as it came.
    odd = rss([Item("NW1", "甲", body='<p><img src="x.jpg" alt="a>b"></p>'), Item("NW2", "乙")])
    cases.append(("odd markup", odd, URL, "", True))
    return cases + [(name, body, URL, "", False) for name, body in DECLINED]


def _synthetic() -> list[Case]:
    corpus = Corpus(40, 8, seed=7)
    return [
        (f"synthetic {feed.index} {feed.kind}", corpus.render(feed), URL, feed.content_type, True)
        for feed in corpus.feeds
    ]


def _corpus() -> list[Case]:
    """The real-world feeds, and of feedparser's test documents every ill-formed one and
    every fourth of the others (all of them are stored in test_feedparser_corpus)."""
    folder = ROOT / "tests" / "corpus"
    paths = sorted(p for p in folder.glob("*") if p.suffix in (".xml", ".rdf", ".atom"))
    cases = [(p.name, p.read_bytes(), URL, "", None) for p in paths]
    sample = [
        (f"feedparser/{name}", body, URL, "", None)
        for number, (name, body) in enumerate(fpcorpus.documents().items())
        if name.startswith("illformed/") or number % 4 == 0
    ]
    return cases + sample


def _hostile() -> list[Case]:
    return [
        ("hostile laughs", document(LAUGHS), URL, "", False),
        ("hostile quadratic", document(QUADRATIC), URL, "", False),
        (
            "gbk header only",
            b"\n".join(gbk_feed("gbk").split(b"\n")[1:]),
            URL,
            "application/rss+xml; charset=GBK",
            None,
        ),
        ("gbk declared utf-8", gbk_feed("UTF-8"), URL, "application/rss+xml; charset=utf-8", None),
        ("gbk declared gb2312", gbk_feed("GB2312"), URL, "text/xml", None),
    ]


CASES = _samples() + _built() + _variants() + _synthetic() + _corpus() + _hostile()


def fast_taken(body: bytes, url: str, content_type: str) -> bool:
    """Whether the poll path's fast path reads this document (after prepare())."""
    try:
        prepared = prepare(body, content_type)
    except ParseError:
        return False
    return (
        parse_fast(prepared, url=url, timezone="Asia/Shanghai", seen_at=SEEN, limits=FieldLimits())
        is not None
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fast_path_equals_feedparser(case: Case) -> None:
    name, body, url, content_type, fast_expected = case
    taken = fast_taken(body, url, content_type)
    if fast_expected is not None:
        assert taken == fast_expected, name
    try:
        slow = parse_xml(body, url=url, content_type=content_type, seen_at=SEEN, fast=False)
    except Exception as exc:  # both paths must then fail the same way
        with pytest.raises(type(exc)):
            parse_xml(body, url=url, content_type=content_type, seen_at=SEEN)
        return
    fast = parse_xml(body, url=url, content_type=content_type, seen_at=SEEN)
    assert fast.entries == slow.entries
    assert fast == slow
    if taken:  # the poll path's parser (fast path in-process, else the sandbox) agrees
        assert parse_feed(body, url=url, content_type=content_type, seen_at=SEEN) == slow


def test_the_corpus_exercises_every_field() -> None:
    """Guard against a vacuous comparison: the corpus has what we compare."""
    feeds = [
        parse_xml(body, url=url, content_type=ct, seen_at=SEEN)
        for _, body, url, ct, fast in CASES
        if fast and fast_taken(body, url, ct)
    ]
    entries = [e for f in feeds for e in f.entries]
    assert {f.version for f in feeds} >= {"rss20", "rss10", "atom10"}
    for field in ("title", "link", "guid", "published", "updated", "content", "summary"):
        assert any(getattr(e, field) for e in entries), field
    for field in ("author", "categories", "enclosures"):
        assert any(getattr(e, field) for e in entries), field
    assert any("http://feeds.example.cn/sanqin/img/1.jpg" in e.content for e in entries)


def test_hostile_xml_is_left_to_feedparser() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<rss version="2.0"><channel><title>&lol2;</title></channel></rss>'
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<rss version="2.0"><channel><title>&x;</title></channel></rss>'
    )
    for body in (bomb, external):
        assert fastparse.read(body, url=URL) is None


def test_unchanged_entries_have_stable_digests() -> None:
    corpus = Corpus(2, 5, seed=3)
    feed = corpus.feeds[0]
    before = fastparse.read(corpus.render(feed), url=URL, content_type=feed.content_type)
    corpus.add_entry(feed)
    after = fastparse.read(corpus.render(feed), url=URL, content_type=feed.content_type)
    assert before is not None and after is not None
    assert [e.digest for e in after.entries[1:]] == [e.digest for e in before.entries]
    moved = fastparse.read(corpus.render(feed), url=URL + "?moved", content_type=feed.content_type)
    assert moved is not None and moved.entries[1].digest != after.entries[1].digest
