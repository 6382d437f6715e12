"""The parse front door (kinds.parse_feed) on hostile and awkward documents: encodings,
entities, content, dates."""

from __future__ import annotations

import codecs
import html
import re
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.errors import ParseError
from aggregator.parse import xmlguard
from aggregator.parse.encoding import decode
from aggregator.parse.feed import parse_prepared, parse_xml, prepare
from aggregator.parse.kinds import needs_worker, parse_feed
from aggregator.parse.limits import FieldLimits, ParseLimits
from aggregator.parse.sandbox import run_in_worker
from aggregator.parse.sanitize import absolute_http_url, clean_html, plain_text
from aggregator.parse.xmlchars import strip_control
from aggregator.parse.xmlguard import MAX_EXPANSION, screen

SEEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TITLE = "三秦都市报：凝神聚力保畅通 镕 𠀀"  # 镕 is GBK, not GB2312; 𠀀 needs GB18030


def rss(items: str, channel: str = "", decl: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return (
        f'{decl}\n<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">'
        f"<channel><title>测试</title><link>http://news.example.cn/</link>{channel}{items}"
        "</channel></rss>"
    )


def item(title: str = "标题", extra: str = "") -> str:
    return f"<item><title>{title}</title><link>http://news.example.cn/a/1</link>{extra}</item>"


def parse(body: bytes | str, content_type: str = "", **kwargs: object) -> list[str]:
    data = body.encode("utf-8") if isinstance(body, str) else body
    feed = parse_feed(
        data, url="http://news.example.cn/feed.xml", content_type=content_type, seen_at=SEEN
    )
    return [e.title for e in feed.entries]


# --- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32-le", codecs.BOM_UTF32_LE),
    ],
)
def test_a_byte_order_mark_wins_over_every_label(encoding: str, bom: bytes) -> None:
    text = rss(item(TITLE), decl='<?xml version="1.0" encoding="gbk"?>')
    assert parse(bom + text.encode(encoding), "text/xml; charset=iso-8859-1") == [TITLE]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_sniffed(encoding: str) -> None:
    text = rss(item(TITLE), decl='<?xml version="1.0" encoding="UTF-16"?>')
    assert parse(text.encode(encoding)) == [TITLE]
    assert parse(text.encode(encoding), f"application/xml; charset={encoding}") == [TITLE]


def test_http_charset_wins_over_the_xml_declaration() -> None:
    text = rss(item(TITLE), decl='<?xml version="1.0" encoding="utf-8"?>')
    assert parse(text.encode("gb18030"), "application/rss+xml; charset=gb18030") == [TITLE]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # charset only in the HTTP header, no XML declaration at all
        (rss(item("凝神聚力 镕"), decl="").encode("gbk"), "text/xml; charset=GBK"),
        # GBK wrongly declared as UTF-8, in the header and in the document
        (rss(item("凝神聚力 镕")).encode("gbk"), "application/rss+xml; charset=utf-8"),
        # declared GB2312 (but using GBK characters) only in the XML declaration
        (
            rss(item("凝神聚力 镕"), decl='<?xml version="1.0" encoding="gb2312"?>').encode("gbk"),
            "text/xml",
        ),
        # and served as text/html with no charset, as many CMSs do
        (
            rss(item("凝神聚力 镕"), decl='<?xml version="1.0" encoding="GBK"?>').encode("gbk"),
            "text/html",
        ),
    ],
)
def test_gbk_in_every_disguise(body: bytes, content_type: str) -> None:
    assert parse(body, content_type) == ["凝神聚力 镕"]


def test_gb18030_four_byte_characters() -> None:
    body = rss(item(TITLE), decl='<?xml version="1.0" encoding="GB18030"?>').encode("gb18030")
    assert parse(body) == [TITLE]


def test_a_latin1_label_on_utf8_bytes_is_read_as_utf8() -> None:
    body = rss(item("Ünïcödé 中文"), decl='<?xml version="1.0" encoding="iso-8859-1"?>')
    assert parse(body.encode("utf-8")) == ["Ünïcödé 中文"]


def test_real_latin1_still_works() -> None:
    body = '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
    body += "<title>t</title><item><title>café</title></item></channel></rss>"
    assert parse(body.encode("latin-1")) == ["café"]


def test_decode_reports_how_it_chose() -> None:
    assert decode(codecs.BOM_UTF8 + b"<a/>", "text/xml; charset=gbk").chosen_by == "bom"
    assert decode("<a>中</a>".encode("gbk"), "text/xml; charset=gbk").chosen_by == "http"
    gbk_as_utf8 = decode("<a>中文</a>".encode("gbk"), "text/xml; charset=utf-8")
    assert (gbk_as_utf8.text, gbk_as_utf8.chosen_by) == ("<a>中文</a>", "detected")


# --- hostile XML ---------------------------------------------------------------------------


LAUGHS = (
    '<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
)


@pytest.mark.parametrize(
    ("prolog", "title", "message"),
    [
        (LAUGHS, "&c;", "refers to other entities"),
        (LAUGHS.replace("><", ">\n<"), "&c;", "refers to other entities"),
        ('<!DOCTYPE rss [\n<!ENTITY a "' + "A" * 10_000 + '">\n]>', "&a;" * 11, "expand"),
        ('<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;", "external entity"),
        ('<!DOCTYPE rss [<!ENTITY x PUBLIC "-//x//" "http://e/x">]>', "&x;", "external entity"),
        ('<!DOCTYPE rss [<!ENTITY % p SYSTEM "http://e/p.dtd"> %p;]>', "x", "parameter entity"),
        ('<!DOCTYPE rss [<!ENTITY % p "x">]>', "x", "parameter entity"),
        ("<!DOCTYPE rss [ %p; ]>", "x", "parameter entity"),
        ('<!DOCTYPE rss [<!ENTITY a "<b>x</b>">]>', "&a;", "holds markup"),
        ('<!DOCTYPE rss [<!ELEMENT rss (#PCDATA)<!ENTITY a "x">]>', "&a;", "malformed"),
        ('<!DOCTYPE rss [<!ENTITY a "x">', "&a;", "malformed"),
        ('<!DOCTYPE rss [<!ENTITY a "x', "&a;", "malformed|unterminated"),
        ("<!DOCTYPE rss [<!ENTITY a 'x", "&a;", "unterminated"),
        ("<!DOCTYPE rss [<!BOGUS>]>", "x", "malformed"),
        ("<!DOCTYPE rss><!DOCTYPE rss>", "x", "two DOCTYPE"),
    ],
)
def test_hostile_doctypes_are_refused(prolog: str, title: str, message: str) -> None:
    body = rss(item(title)).replace("<rss ", prolog + "\n<rss ", 1)
    with pytest.raises(ParseError, match=message):
        parse(body)
    for encoding in ("utf-16", "utf-32"):  # the same in other encodings
        with pytest.raises(ParseError, match=message):
            parse(body.replace('encoding="utf-8"', f'encoding="{encoding}"').encode(encoding))


def test_expansion_bound_is_small() -> None:
    value = "x" * 1000
    allowed = MAX_EXPANSION // 1000
    screen(f'<!DOCTYPE r [<!ENTITY a "{value}">]><r>' + "&a;" * allowed + "</r>")
    with pytest.raises(ParseError):
        screen(f'<!DOCTYPE r [<!ENTITY a "{value}">]><r>' + "&a;" * (allowed + 1) + "</r>")


def test_xml_names_match_the_characters_the_plain_classes_name() -> None:
    """xmlguard spells the name classes with negated ones (they compile faster): the same
    characters match, every code point tried."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    first, rest = r"[A-Za-z_:\u00c0-\uffff]", r"[\w.:\u00b7\u00c0-\uffff-]"
    assert re.findall(xmlguard._NAME_START, every) == re.findall(first, every)
    assert re.findall(xmlguard._NAME_CHAR, every) == re.findall(rest, every)
    assert screen("<x\U00010400/>").root == "x\U00010400"  # a letter past the BMP is \w
    assert screen("<\U00010400x/>").root is None  # but cannot start a name
    assert screen("<頻道·x-1 a='1'/>").root == "頻道·x-1"


def test_harmless_dtd_parts_are_dropped_and_plain_entities_kept() -> None:
    prolog = (
        '<!-- a comment --><?pi x?>\n<!DOCTYPE rss SYSTEM "http://e/rss.dtd" [\n'
        '<!ELEMENT rss ANY>\n<!ATTLIST rss version CDATA "2.0">\n<!-- inside -->\n'
        '<!ENTITY site "三秦网">\n<!ENTITY copy "&#169;">\n<!NOTATION gif SYSTEM "image/gif">\n]>'
    )
    body = rss(item("&site;&copy;")).replace("<rss ", prolog + "\n<rss ", 1)
    prepared = prepare(body.encode("utf-8"))
    assert b"http://e/rss.dtd" not in prepared.data
    assert b"ELEMENT" not in prepared.data and b"NOTATION" not in prepared.data
    assert prepared.has_dtd
    assert parse(body) == ["三秦网©"]


def test_entities_declared_inside_the_body_are_not_expanded() -> None:
    body = rss(item("&a;&a;")).replace("<channel>", '<!DOCTYPE x [<!ENTITY a "AAAA">]><channel>')
    titles = parse(body)
    assert "AAAA" not in "".join(titles)


def test_a_document_with_a_dtd_is_parsed_in_a_worker() -> None:
    body = rss(item("&site;")).replace(
        "<rss ", '<!DOCTYPE rss [\n<!ENTITY site "三秦网">\n]>\n<rss ', 1
    )
    prepared = prepare(body.encode("utf-8"))
    limits = ParseLimits()
    assert needs_worker(prepared, limits)
    arguments = {
        "prepared": prepared,
        "url": "http://news.example.cn/",
        "timezone": "Asia/Shanghai",
        "seen_at": SEEN,
        "fast": False,
    }
    report = run_in_worker(parse_prepared, arguments, limits)
    assert report.result is not None and report.error is None
    assert [e.title for e in report.result.entries] == ["三秦网"]
    assert 0 < report.max_rss_kib < 512 * 1024
    same = parse_feed(body.encode("utf-8"), seen_at=SEEN, url="http://news.example.cn/")
    assert same == report.result


def test_a_parse_that_runs_away_is_stopped_by_the_time_limit() -> None:
    """No entity at all: 50 000 attributes on one element make feedparser quadratic
    (about 40 s). Too big to parse in-process, it is killed at the limit."""
    attributes = " ".join(f'a{n}="1"' for n in range(50_000))
    body = rss(f"<item {attributes}><title>x</title></item>").encode()
    with pytest.raises(ParseError, match="took longer than 1 s"):
        parse_feed(body, seen_at=SEEN, limits=ParseLimits(timeout=1.0))


def test_small_plain_documents_stay_in_process() -> None:
    prepared = prepare(rss(item()).encode("utf-8"))
    assert not needs_worker(prepared, ParseLimits())
    assert needs_worker(prepared, ParseLimits(inline_max_bytes=0))


# --- not a feed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"  \r\n\t ", "empty"),
        (codecs.BOM_UTF8, "empty"),
        (b"<!DOCTYPE html>\n<html><head><title>t</title></head><body>x</body></html>", "HTML"),
        (b"<html><body><rss version='2.0'></rss></body></html>", "HTML"),
        (b"Just some text, not XML", "does not start with an XML element"),
        (b'{"version": "https://jsonfeed.org/version/1"}', "JSON Feed without a list of items"),
        (b"<?xml version='1.0'?><note><to>x</to></note>", "not a feed"),
        (rss(item() * 3).encode()[:-30], "truncated"),
        (rss(item() * 3).encode()[:-7], "truncated"),
        (rss(item() * 3).encode()[:120], "truncated"),
    ],
)
def test_not_a_feed_is_an_error_never_phantom_entries(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(body)


def test_trailing_junk_after_the_root_is_tolerated() -> None:
    assert parse(rss(item()) + "\n<!-- served in 0.1s -->\n") == ["标题"]


# --- content safety ------------------------------------------------------------------------


def test_content_is_sanitized_and_urls_made_absolute() -> None:
    html = (
        '<p onmouseover="x()" style="position:fixed">正文<script>alert(1)</script>'
        '<img src="/img/1.jpg" onerror="alert(2)"><img src="data:image/png;base64,AAAA">'
        '<a href=" jav&#x09;ascript:alert(3)">a</a><a href="vbscript:x">b</a>'
        '<a href="rel/page.html" title="javascript:alert(4)">c</a>'
        '<iframe src="http://evil/"></iframe><form><input name="q"><button>go</button></form>'
        '<svg onload="alert(5)"></svg><object data="x.swf"></object>'
        '<video poster="data:x" src="//cdn.example.cn/v.mp4"></video></p>'
    )
    escaped = html.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    feed = parse_feed(
        rss(item("t", f"<description>{escaped}</description>")).encode(),
        url="http://news.example.cn/feed/rss.xml",
        seen_at=SEEN,
    )
    content = feed.entries[0].content
    for bad in (
        "<script",
        "alert(1)",
        "onmouseover",
        "onerror",
        "onload",
        "style=",
        "data:",
        "vbscript",
        "iframe",
        "<form",
        "<input",
        "<button",
        "<svg",
        "<object",
        "title=",
    ):
        assert bad not in content.lower(), bad
    # Every URL left is absolute http(s): " jav\tascript:" was resolved as a relative path.
    urls = re.findall(r'(?:href|src|poster|cite)="([^"]*)"', content)
    assert urls and all(u.startswith(("http://", "https://")) for u in urls), urls
    assert 'src="http://news.example.cn/img/1.jpg"' in content
    assert 'href="http://news.example.cn/feed/rel/page.html"' in content
    assert 'src="http://cdn.example.cn/v.mp4"' in content


def test_xml_base_is_used_for_links() -> None:
    body = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xml:base="http://base.example.cn/news/"><title>t</title><id>x</id>'
        '<entry><title>e</title><id>e1</id><link href="2021/1.html"/>'
        '<content type="html">&lt;img src="p.png"&gt;</content>'
        '<link rel="enclosure" href="a.mp3" type="audio/mpeg" length="12"/></entry></feed>'
    )
    entry = parse_feed(body.encode(), url="http://other.example/f", seen_at=SEEN).entries[0]
    assert entry.link == "http://base.example.cn/news/2021/1.html"
    assert 'src="http://base.example.cn/news/p.png"' in entry.content
    assert [e.url for e in entry.enclosures] == ["http://base.example.cn/news/a.mp3"]


def test_html_is_resolved_against_the_xml_base_of_its_own_element() -> None:
    # The sanitizer resolves relative URLs inside HTML, against the base feedparser
    # says was in force where each field was: the entry's, the content's own.
    body = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xml:base="http://base.example.cn/news/"><title>t</title><id>x</id>'
        '<entry xml:base="http://entry.example.cn/e/"><title>e</title><id>e1</id>'
        '<summary type="html">&lt;a href="s.html"&gt;s&lt;/a&gt;</summary>'
        '<content type="html" xml:base="/c/">&lt;img src="p.png" alt="图"&gt;'
        '&lt;a href="../up.html"&gt;up&lt;/a&gt;</content></entry>'
        '<entry><title>f</title><id>e2</id><summary type="html">&lt;img src="q.png"&gt;'
        "</summary></entry></feed>"
    )
    first, second = parse_feed(body.encode(), url="file:/tmp/f.xml", seen_at=SEEN).entries
    assert 'src="http://entry.example.cn/c/p.png"' in first.content
    assert 'href="http://entry.example.cn/up.html"' in first.content
    assert 'href="http://entry.example.cn/e/s.html"' in first.summary
    assert 'src="http://base.example.cn/news/q.png"' in second.content


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "data:text/html,x", "ftp://x/y", "file:///etc/passwd", "//"]
)
def test_non_http_links_are_dropped(link: str) -> None:
    body = rss(
        f"<item><title>t</title><link>{link}</link>"
        f'<enclosure url="{link}" type="audio/mpeg" length="1"/></item>'
    )
    entry = parse_feed(body.encode(), url="", seen_at=SEEN).entries[0]
    assert entry.link == ""
    assert entry.enclosures == ()


@pytest.mark.parametrize("fast", [True, False])
def test_atom_plain_text_is_shown_as_written(fast: bool) -> None:
    # type="text" (Atom's default): a "<" or "&amp;" in it is text, not markup.
    body = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        "<id>x</id><entry><title>if a &lt;b&gt; c &amp;amp; d</title><id>e1</id>"
        "<summary>1 &lt; 2, x&lt;y, AT&amp;T &lt;script&gt;</summary>"
        '<content type="text">Line &lt;br&gt; one</content></entry>'
        '<entry><title type="html">&lt;b&gt;粗&lt;/b&gt; &amp;amp;</title><id>e2</id>'
        '<content type="html">&lt;p&gt;正文&lt;/p&gt;</content></entry></feed>'
    )
    feed = parse_xml(body.encode(), url="http://x.cn/f.xml", seen_at=SEEN, fast=fast)
    text, markup = feed.entries
    assert text.title == "if a <b> c &amp; d"
    assert text.summary == "1 &lt; 2, x&lt;y, AT&amp;T &lt;script&gt;"
    assert text.content == "Line &lt;br&gt; one"
    assert (markup.title, markup.content) == ("粗 &", "<p>正文</p>")


def test_titles_are_plain_text_and_control_characters_go_everywhere() -> None:
    title = "&lt;b&gt;粗&lt;/b&gt; &lt;script&gt;x()&lt;/script&gt;标\x02题&#1;"
    extra = (
        "<author>记\x07者</author><category>分\x0b类</category>"
        "<description>&lt;p&gt;正\x1b文&lt;/p&gt;</description><guid>g\x01uid</guid>"
    )
    entry = parse_feed(rss(item(title, extra)).encode(), seen_at=SEEN).entries[0]
    assert entry.title == "粗 x()标题"
    assert (entry.author, entry.categories, entry.guid) == ("记者", ("分类",), "guid")
    assert entry.content == "<p>正文</p>"


@pytest.mark.parametrize("reference", ["&#1;", "&#x1F;", "&#xFFFE;", "&#65535;", "&#0;"])
def test_character_references_to_controls_leave_no_control_in_content(reference: str) -> None:
    # Escaped HTML: the reference reaches the sanitizer, whose parser turns it into
    # the character itself.
    escaped = html.escape(f"<p>正{reference}文</p>")
    body = rss(item("t", f"<description>{escaped}</description>"))
    for fast in (True, False):
        entry = parse_xml(body.encode(), seen_at=SEEN, fast=fast).entries[0]
        assert strip_control(entry.content) == entry.content
        assert "正" in entry.content and "文" in entry.content


def test_oversized_fields_are_cut() -> None:
    limits = FieldLimits(title=20, summary=50, content=100, entries=3)
    body = rss(item("长" * 500, f"<description>{'&lt;p&gt;字&lt;/p&gt;' * 500}</description>") * 5)
    feed = parse_feed(body.encode(), seen_at=SEEN, limits=ParseLimits(fields=limits))
    assert len(feed.entries) == 3
    assert all(len(e.title) <= 20 and len(e.content) <= 100 for e in feed.entries)
    assert feed.entries[0].content.endswith("</p>")
    assert len(plain_text("x" * 5000, 1000)) == 1000


def test_sanitizer_helpers_directly() -> None:
    assert clean_html('<a href="JaVaScRiPt:alert(1)">x</a>') == '<a rel="noopener noreferrer">x</a>'
    assert clean_html('<p title="data:text/html,x">x</p>') == "<p>x</p>"
    assert "mailto:a@b.cn" in clean_html('<a href="mailto:a@b.cn">m</a>')
    assert absolute_http_url("http://[::1") == ""
    assert absolute_http_url("/x", "https://e.cn/a/") == "https://e.cn/x"
    assert absolute_http_url("http://e.cn/" + "x" * 5000) == ""


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2021年12月24日 10:30", datetime(2021, 12, 24, 2, 30, tzinfo=UTC)),
        ("2021-12-24 10:30:00", datetime(2021, 12, 24, 2, 30, tzinfo=UTC)),
        ("2021/12/24 10:30", datetime(2021, 12, 24, 2, 30, tzinfo=UTC)),
        ("2021年12月24日10时30分", datetime(2021, 12, 24, 2, 30, tzinfo=UTC)),
        ("2021-12-24 10:30:00.0", datetime(2021, 12, 24, 2, 30, tzinfo=UTC)),
        ("2021-12-24 10:30:00 +0000", datetime(2021, 12, 24, 10, 30, tzinfo=UTC)),
        ("Fri, 24 Dec 2021 03:00:26 +0800", datetime(2021, 12, 23, 19, 0, 26, tzinfo=UTC)),
        ("2021-12-24T03:00:26+08:00", datetime(2021, 12, 23, 19, 0, 26, tzinfo=UTC)),
        ("0001-01-01 00:00:00", None),  # nonsense year
        ("Mon, 01 Jan 1900 00:00:00 GMT", None),
        ("2099-01-01 00:00:00", None),  # far future: the store uses first-seen time
        ("2021-13-45 10:00", None),
        ("yesterday", None),
    ],
)
def test_dates(raw: str, expected: datetime | None) -> None:
    body = rss(item("t", f"<pubDate>{raw}</pubDate>"))
    assert parse_feed(body.encode(), seen_at=SEEN).entries[0].published == expected


def test_naive_dates_use_the_source_time_zone() -> None:
    body = rss(item("t", "<pubDate>2021-12-24 10:30:00</pubDate>")).encode()
    utc = parse_feed(body, seen_at=SEEN, timezone="UTC").entries[0].published
    tokyo = parse_feed(body, seen_at=SEEN, timezone="Asia/Tokyo").entries[0].published
    assert utc is not None and tokyo is not None and utc - tokyo == timedelta(hours=9)


# --- polling hints in the feed -------------------------------------------------------------


def test_polling_hints_are_read() -> None:
    channel = (
        "<ttl>90</ttl><sy:updatePeriod>daily</sy:updatePeriod>"
        "<sy:updateFrequency>4</sy:updateFrequency>"
        "<skipHours><hour>0</hour><hour>1</hour><hour>23</hour><hour>99</hour></skipHours>"
        "<skipDays><day>Saturday</day><day>Sunday</day><day>Caturday</day></skipDays>"
    )
    feed = parse_feed(rss(item(), channel).encode(), seen_at=SEEN)
    assert feed.ttl_minutes == 90
    assert feed.update_period == 6 * 3600
    assert feed.skip_hours == (0, 1, 23)
    assert feed.skip_days == (5, 6)


def test_parses_in_child_processes_run_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the daemon's poll threads would: six large documents at once get two child
    processes at a time (RUNNING, two per core; two here), not six."""
    from aggregator.parse import sandbox
    from tests.sandboxjob import nap

    monkeypatch.setattr(sandbox, "RUNNING", threading.BoundedSemaphore(2))
    spans: list[tuple[float, float]] = []

    def parse_one() -> None:
        spans.append(run_in_worker(nap, {"seconds": 0.3}, ParseLimits()).result)

    threads = [threading.Thread(target=parse_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(spans) == 6
    at_once = max(sum(1 for b, e in spans if b <= began < e) for began, _ in spans)
    assert at_once <= 2
