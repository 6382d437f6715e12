"""The parse path's shortcuts answer exactly as the general code they stand in for.

Each shortcut (plain URLs in the sanitizer, common date shapes, ...) is checked
against the slow, general function on many generated values, including the
awkward ones: odd schemes, whitespace and controls, dot segments, odd bases.
"""

from __future__ import annotations

import contextlib
import html
import re
from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

import pytest
from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.urls import _urljoin, resolve_relative_uris
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree
from lxml import html as lxml_html

from aggregator import urls as url_spellings
from aggregator.parse import fast as fastparse
from aggregator.parse import iri, sanitize
from aggregator.parse.dates import feedparser_date, impossible_offset
from aggregator.parse.feed import prepare, prepare_unread
from aggregator.parse.sanitize import (
    URL_ATTRIBUTES,
    _attribute_filter,
    _joined_http_url,
    absolute_http_url,
    clean_html,
    http_join,
    plain_text,
    strip_control,
)
from bench.corpus import MARKUPS, Corpus
from tests.test_posts import SEED

URL = "http://x.cn/feed.xml"
BASES = [
    "",
    "http://x.cn/f.xml",
    "https://news.example.cn/a/b/",
    "HTTP://News.Example.CN:8080/feed?x=1#top",
    "http://x.cn",
    "http:///nohost",
    "ftp://x.cn/",
    "file:/tmp/feed.xml",
    "http://[::1/",
    "http://[::1]:80/a",
    "javascript:alert(1)",
    "//x.cn/a",
    "http://user@x.cn/a;p?q",
]
PIECES = [
    "http://",
    "https://",
    "HTTP://",
    "mailto:",
    "javascript:",
    "java\tscript:",
    " javascript:",
    "data:",
    "x.cn",
    "a.b:80",
    "a.b:",
    "@",
    "/",
    "//",
    "/./",
    "/../",
    ".",
    "..",
    "?",
    "?q=1",
    "&",
    "#f",
    ";p",
    "%20",
    " ",
    "\t",
    "\n",
    "\x01",
    "\\",
    "[",
    "]",
    "图",
    "uploads",
    "a.jpg",
    "=",
    ":",
]
SEGMENTS = ["a", "b.jpg", ".", "..", ".x", "", "%2e", "a;b", "a:b", "@", "!$&'()*+,=", "图", "a b"]
HOSTS = ["x.cn", "X.CN", "a.b:80", "a.b:", ":80", "", "u@h", "[::1]", "[", "-", "h_x", "a℀b"]
paths = st.lists(st.sampled_from(SEGMENTS), max_size=4).map("/".join)
shaped = st.builds(
    lambda scheme, host, path, query, fragment: scheme + host + path + query + fragment,
    st.sampled_from(["http://", "https://", "HTTP://", "http:", ""]),
    st.sampled_from(HOSTS) | st.just(""),
    paths.map(lambda p: "/" + p) | paths,
    st.sampled_from(["", "?", "?a=1&b=2", "?a=/./", "?;", "?a=%20"]),
    st.sampled_from(["", "", "#", "#x"]),
)
urls = st.lists(st.sampled_from(PIECES), max_size=8).map("".join) | st.text(max_size=12) | shaped
bases = st.sampled_from(BASES)


@settings(max_examples=600)
@given(urls, bases)
@example("http://x.cn/a/./b", "http://x.cn/")
@example("/uploads/202112/1-2.jpg", "http://x.cn/f.xml")
@example("/a?", "http://x.cn/f.xml")
@example("//evil.cn/a", "http://x.cn/f.xml")
@example("http://x.cn/a", "http://[::1/")
def test_absolute_http_url_shortcuts_agree_with_urljoin(url: str, base: str) -> None:
    assert absolute_http_url(url, base) == _joined_http_url(url, base)
    joined = http_join(base, url)
    if joined is not None:
        assert joined == _joined_http_url(url, base) != ""


def _reference_check(base: str, name: str, value: str) -> str | None:
    """The attribute filter as it was before it had a shortcut."""
    if sanitize._SQUEEZE.sub("", value).lower().startswith(sanitize._DANGEROUS_SCHEMES):
        return None
    if name in URL_ATTRIBUTES:
        if name == "href" and value.strip().lower().startswith("mailto:"):
            return value.strip()
        url = _joined_http_url(value, base)
        if not url.isascii():
            url = iri.link(url)  # a host in another script shown as links are
        return url or (None if base else _kept_relative(value))
    return value


def _kept_relative(value: str) -> str | None:
    """With no base, a relative reference is kept as written (a file: source's links)."""
    value = strip_control(value).strip()
    try:
        return value if value and not urlsplit(value).scheme else None
    except ValueError:
        return None


@settings(max_examples=600)
@given(urls, bases, st.sampled_from(["href", "src", "cite", "poster", "title", "alt", "class"]))
@example("java\tscript:alert(1)", "", "title")
@example("JaVa\x00Script:alert(1)", "http://x.cn/", "href")
@example(" mailto:a@b.cn ", "http://x.cn/", "href")
@example("http://x.cn/a b", "http://x.cn/", "src")
def test_attribute_filter_shortcut_agrees(value: str, base: str, name: str) -> None:
    check = _attribute_filter(base)
    assert check("a", name, value) == _reference_check(base, name, value)


def test_dangerous_values_still_go() -> None:
    for value in ("java\tscript:alert(1)", "\x01data:text/html,x", "VBScript:x", " file:/etc"):
        assert _attribute_filter("http://x.cn/")("a", "href", value) is None
        assert _attribute_filter("")("p", "title", value) is None
    html = '<p title="java&#9;script:x">a</p><a href="/x/a.jpg">b</a>'
    assert clean_html(html, None, "http://x.cn/f") == (
        '<p>a</p><a href="http://x.cn/x/a.jpg" rel="noopener noreferrer">b</a>'
    )


@settings(max_examples=600)
@given(urls, bases)
@example("/uploads/202112/1-2.jpg", "http://x.cn/f.xml")
@example("/a/../b", "http://x.cn/f.xml")
def test_fastparse_joins_agree_with_feedparser(url: str, base: str) -> None:
    assert fastparse._join(base, url) == _urljoin(base, url)


# --- dates -------------------------------------------------------------------------------

two = st.integers(0, 99).map(lambda n: f"{n:02d}")
zones = st.sampled_from(
    ["+0800", "-0530", "+2400", "-0000", "GMT", "UT", "UTC", "Z", "EST", "+08:00", "", "gmt"]
)
spaces = st.sampled_from([" ", " ", " ", "  ", "\t"])
rfc822 = st.builds(
    lambda dayname, day, month, year, h, m, s, zone, sp, edge: (
        f"{edge}{dayname}{day}{sp}{month} {year} {h}:{m}:{s} {zone}{edge}"
    ),
    st.sampled_from(["", "Fri, ", "Sat, ", "Tue, ", "Thu, ", "fri, ", "Fri ", "Fri,"]),
    st.integers(0, 39).map(str) | two,
    st.sampled_from(["Jan", "Feb", "Oct", "Dec", "dec", "DEC", "Foo"]),
    st.integers(0, 9999).map(lambda n: f"{n:04d}") | two,
    two,
    two,
    two,
    zones,
    spaces,
    st.sampled_from(["", "", " ", "\n"]),
)
w3dtf = st.builds(
    lambda year, month, day, t, h, m, s, fraction, zone, edge: (
        f"{edge}{year}-{month}-{day}{t}{h}:{m}:{s}{fraction}{zone}{edge}"
    ),
    st.integers(0, 9999).map(lambda n: f"{n:04d}"),
    two,
    two,
    st.sampled_from(["T", "T", "t", " "]),
    two,
    two,
    two,
    st.sampled_from(["", "", ".5", ".999999999999999999", ".0001"]),
    st.sampled_from(["Z", "+08:00", "-05:30", "+14:00", "-23:59", "+0800", "z", "", "+24:00"]),
    st.sampled_from(["", "", " "]),
)


@settings(max_examples=500)
@given(rfc822 | w3dtf | st.text(max_size=30))
@example("Fri, 24 Dec 2021 10:53:26 +0800")
@example("2021-12-24T03:00:26+08:00")
@example("Mon, 01 Jan 0001 00:00:00 +0800")  # the RFC 822 handler overflows: others read it
@example("2021-02-30T00:00:00Z")  # W3C-DTF refuses the day: another handler reads it
@example("2021-12-24T03:00:59.99999999999999999Z")
@example("")
def test_date_shortcut_agrees_with_feedparser(text: str) -> None:
    assert feedparser_date(text) == _parse_date(text)


# --- zone offsets ------------------------------------------------------------------------

_OFFSET_AT_END = re.compile(r"([+-])(\d\d)(:?)(\d\d)\Z")
OFFSET_PIECES = ["0", "1", "4", "5", "6", "9", "14", "25", "59", "60", ":", "+", "-", " ", "\t"]
offsets = st.lists(st.sampled_from([*OFFSET_PIECES, "T", "GMT", "Z", "2021-12-24", "年"]))


def _reference_impossible_offset(raw: str) -> bool:
    """impossible_offset as a pattern: a zone offset ending the date, a time before it."""
    found = _OFFSET_AT_END.search(raw.rstrip())
    if found is None or ":" not in raw[: found.start()]:
        return False
    hours, minutes = int(found[2]), int(found[4])
    return minutes > 59 or hours * 60 + minutes > 14 * 60


@settings(max_examples=2000)
@given(offsets.map("".join))
@example("Fri, 24 Dec 2021 03:00:26 +2500")
@example("2021-12-24T10:30:00-14:30")
@example("10:00 +25:00 ")
@example(":2021-12-2460   ")  # blanks after an impossible offset (found by hypothesis)
def test_impossible_offset_agrees_with_a_pattern(raw: str) -> None:
    assert impossible_offset(raw) == _reference_impossible_offset(raw)


# --- text --------------------------------------------------------------------------------

WHITESPACE = [" ", "  ", "\t", "\n", "\xa0", "\u3000", "\u2028", "\x1c", "\x85", "\u200b"]
texts = st.lists(
    st.sampled_from(
        [
            *WHITESPACE,
            *["<b>", "</b>", "<", ">", "&amp;", "&#1;", "&#12288;", "&", "\x01", "\ud800"],
            *["\ufffe", "标题", "“冬日”", "AT&T", "Ã©", "\x80", "\x93", "é", "abc"],
            *["\u202e", "\u2067", "\ufeff", "\u2060", "\u200d", "\u0301" * 3, "&#x202E;"],
        ]
    ),
    max_size=8,
).map("".join) | st.text(max_size=20)


def _reference_plain_text(fragment: str, max_length: int | None = None, markup: bool = True) -> str:
    """plain_text as it was before it had a shortcut."""
    text = strip_control(fragment or "")
    if markup:
        text = html.unescape(sanitize._TAG.sub("", text))
    text = sanitize._SPACE.sub(" ", sanitize.display_safe(strip_control(text))).strip()
    if max_length is not None and len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def _reference_finish(text: str) -> str:
    """fastparse._finish as it was before it had a shortcut."""
    if not text.isascii():
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            text = text.encode("iso-8859-1").decode("utf-8")
        if fastparse._C1.search(text):
            text = text.translate(_cp1252)
    return text


@settings(max_examples=500)
@given(texts, st.sampled_from([None, 1, 5, 1000]), st.booleans())
def test_text_shortcuts_agree(text: str, limit: int | None, markup: bool) -> None:
    assert plain_text(text, limit, markup=markup) == _reference_plain_text(text, limit, markup)
    assert fastparse._finish(text) == _reference_finish(text)


_OLD_BASE_ATTR = re.compile(rb"[\s:]base\s*=", re.IGNORECASE)
BODY_PIECES = [b"base", b"BaSe", b"xml:base", b" ", b"\t", b"\x0b", b"=", b" =", b"<a ", b"x"]


@settings(max_examples=300)
@given(st.lists(st.sampled_from([*BODY_PIECES, b":", b"\xe4\xb8\x89", b"\xc3\x9f"])).map(b"".join))
@example(b"base=")
@example(b'<feed xml:base="http://x.cn/">')
def test_base_attribute_scan_agrees(body: bytes) -> None:
    assert fastparse._has_base(body) == bool(_OLD_BASE_ATTR.search(body))


PREPARED = b'<?xml version="1.0" encoding="utf-8"?>'
FEEDPARSER_DECLARATION = b"<?xml version='1.0' encoding='utf-8'?>"
DOCUMENT_PIECES = [b"\n", b"<rss>", b"\xe4\xb8\x89", b"\xe4\xb8", b"\xff", b"\xed\xa0\x80", b"\x00"]
BAD_UTF8 = [
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe4\xb8",
    b"\x80",
]


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([*DOCUMENT_PIECES, b"<?xml version='1.0'?>", b"abc"])).map(b"".join),
    st.sampled_from([PREPARED, b"", b"\xef\xbb\xbf" + PREPARED, PREPARED.upper()]),
    st.sampled_from(["application/xml; charset=utf-8", "application/xml", "text/xml"]),
)
def test_decoding_shortcut_agrees_with_feedparser(rest: bytes, start: bytes, ctype: str) -> None:
    body = start + rest
    headers = {"content-location": URL, "content-type": ctype}
    result: dict[str, object] = {}
    expected = convert_to_utf8(headers, body, result)
    try:
        decoded = fastparse._decoded(body, URL, ctype)
    except fastparse.Unsupported:
        assert not result.get("encoding")
        return
    if decoded.startswith(PREPARED) and expected.startswith(FEEDPARSER_DECLARATION):
        # The shortcut keeps our declaration; lxml reads feedparser's quotes the same.
        decoded = FEEDPARSER_DECLARATION + decoded[len(PREPARED) :]
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        if decoded != expected:  # the shortcut kept bytes that are not UTF-8: lxml refuses
            assert fastparse.read(body, url=URL, content_type=ctype) is None
        return
    assert decoded == expected


# --- preparing a body without decoding it all -----------------------------------------

UNREAD_PROLOGS = [
    b"\xef\xbb\xbf",
    b" \n",
    PREPARED,
    FEEDPARSER_DECLARATION,
    b"<?xml version='1.0' encoding='gbk'?>",
    b"<?xml version='1.0'?>",
    b"<!-- \xe4\xb8\x89 -->",
    b"<?pi x?>",
    b"<!DOCTYPE rss>",
    b'<!DOCTYPE rss [<!ENTITY a "b">]>',
    b"<!--" + b"\xe4\xb8\x89" * 2700 + b"-->",  # past the decoded head
    b"<html>",
    b"<!--",
    b"\xff",
]
UNREAD_BODIES = [
    b"<rss>",
    b"<channel><title>",
    b"\xe4\xb8\x89",
    b"t &amp; &a;",
    b"</title></channel>",
    b"</rss>",
    b"<rss/>",
    b"\xff",
    b"\xe4\xb8",
    b"\xed\xa0\x80",
    b"\x01",
    b"\xef\xbf\xbe",
    b"\xef\xbf\xbf",
]
WHOLE_RSS = b"<rss><channel><title>\xe4\xb8\x89</title></channel></rss>"


@settings(max_examples=400)
@given(
    st.lists(st.sampled_from(UNREAD_PROLOGS), max_size=4).map(b"".join),
    st.sampled_from([0, 1, 8000, 8185, 8189, 8190, 8192]).map(lambda n: b" " * n),
    st.one_of(
        st.just(WHOLE_RSS),
        st.lists(st.sampled_from(UNREAD_BODIES), max_size=8).map(b"".join),
        st.tuples(st.integers(0, len(WHOLE_RSS)), st.sampled_from(UNREAD_BODIES)).map(
            lambda cut: WHOLE_RSS[: cut[0]] + cut[1] + WHOLE_RSS[cut[0] :]
        ),
    ),
    st.sampled_from(
        ["application/rss+xml; charset=utf-8", "text/xml; charset=gbk", "", "text/xml"]
    ),
)
@example(PREPARED, b"", WHOLE_RSS, "")
@example(b"", b" " * 8189, WHOLE_RSS, "")  # the root's name cut by the head's end
def test_unread_preparation_is_prepares_once_lxml_reads_it(
    prolog: bytes, padding: bytes, rest: bytes, ctype: str
) -> None:
    body = prolog + padding + rest
    unread = prepare_unread(body, ctype)
    if unread is None:
        return
    try:
        etree.fromstring(unread.data, fastparse._PARSER)
    except etree.XMLSyntaxError:
        return  # the caller prepares the body in full
    assert prepare(body, ctype) == unread


def test_corpus_bodies_in_utf8_are_prepared_unread() -> None:
    corpus = Corpus(20, 3, seed=7)
    for feed in corpus.feeds:
        body = corpus.render(feed)
        unread = prepare_unread(body, feed.content_type)
        if "gbk" in feed.content_type.lower() or b"gbk" in body[:100].lower():
            assert unread is None
        else:
            assert unread == prepare(body, feed.content_type)


# --- relative URLs inside HTML --------------------------------------------------------

# Every allowed tag and URL attribute the sanitizer keeps, with plain neighbours.
URL_PLACES = [
    ("a", "href"),
    ("img", "src"),
    ("blockquote", "cite"),
    ("q", "cite"),
    ("video", "poster"),
    ("video", "src"),
    ("audio", "src"),
    ("source", "src"),
]
# URLs as real feeds write them: absolute, network-path, absolute-path or relative.
# (On junk -- no host, controls, entity-like text -- the two ways part: feedparser's
# pass reads "&quot" and "http:///a" its own way; every URL kept is still absolute
# http(s) with a host, as the last test here checks.)
written_urls = st.builds(
    lambda prefix, path, query, fragment: prefix + path + query + fragment,
    st.sampled_from(["http://x.cn/", "HTTPS://img.example.cn:8080/", "//cdn.example.cn/", "/", ""]),
    st.lists(
        st.sampled_from(["a", "b.jpg", "..", ".", "图", "%20", "a-b_c~", "a b"]), max_size=4
    ).map("/".join),
    st.sampled_from(["", "?a=1&b=2", "?infoCode=NW1", "?q"]),
    st.sampled_from(["", "#x"]),
).filter(lambda url: url.strip())


def _elements(written: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda place, url, title: (
            f'<{place[0]} title="{html.escape(title)}" {place[1]}="{html.escape(url)}">'
            f"t</{place[0]}>"
        ),
        st.sampled_from(URL_PLACES),
        written,
        st.sampled_from(["x", "A&B", "图"]),
    )


def _shape(fragment: str) -> list[tuple[str, list[tuple[str, str]], str, str]]:
    """Each element's tag, attributes (in name order), text and tail."""
    if not fragment:
        return []
    root = lxml_html.fragment_fromstring(fragment, create_parent="div")
    return [
        (
            str(e.tag),
            sorted((str(k), str(v)) for k, v in e.attrib.items()),
            e.text or "",
            e.tail or "",
        )
        for e in root.iter()
    ]


@settings(max_examples=500)
@given(st.lists(_elements(written_urls), min_size=1, max_size=4).map("<p>".join), bases)
@example('<img src="/uploads/1.jpg" title="x">t</img>', URL)
@example('<a title="x" href="../a/./b?c=1#d">t</a>', "https://news.example.cn/a/b/")
def test_the_sanitizer_resolves_what_feedparsers_uri_pass_resolved(markup: str, base: str) -> None:
    # feedparser is told not to resolve relative URIs inside HTML: the sanitizer's
    # attribute filter does it. What comes out is what feedparser's pass, then the
    # sanitizer, gave (but for the order of attributes, which its pass sorted).
    # Without an http(s) base, the sanitizer keeps relative URLs as they are, as
    # feedparser's pass does with no base at all.
    http_base = sanitize.http_base(base)
    resolved = resolve_relative_uris(markup, base if http_base else "", "utf-8", "text/html")
    before = clean_html(resolved, base=http_base)
    assert _shape(clean_html(markup, base=http_base)) == _shape(before)


@settings(max_examples=500)
@given(st.lists(_elements(urls), min_size=1, max_size=4).map("<p>".join), bases)
def test_every_url_the_sanitizer_keeps_is_absolute_http(markup: str, base: str) -> None:
    # Whatever the value, the base and how feedparser would have read them.
    for element in lxml_html.fragment_fromstring(
        clean_html(markup, base=sanitize.http_base(base)) or "<p></p>", create_parent="div"
    ).iter():
        for name in URL_ATTRIBUTES & set(element.attrib):
            value = element.attrib[name]
            if name == "href" and value.startswith("mailto:"):
                continue  # links may also be mail addresses
            parts = urlsplit(value)
            if not sanitize.http_base(base) and not parts.scheme:
                continue  # no base to resolve against: relative, as written
            assert parts.scheme in ("http", "https") and parts.hostname, value


# --- share codes -------------------------------------------------------------------------

QUERY_PIECES = ["http://", "x.cn", "/", "?", "#", "&", "=", "infoCode", "NW1", "%20", "+"]
queries = st.lists(
    st.sampled_from([*QUERY_PIECES, "[", "]", " ", "\t", "\n", "\x01", "图", ";", "a", "::"]),
    max_size=10,
).map("".join)


def _reference_pairs(url: str) -> list[tuple[str, str]] | None:
    try:
        return parse_qsl(urlsplit(url).query, keep_blank_values=False)
    except ValueError:
        return None


@settings(max_examples=500)
@given(queries | st.text(max_size=20))
@example("http://x.cn/NewsShare.html?infoCode=NW202112240253260001&from=s0")
@example("http://[x.cn/a?b=c")
@example(" http://x.cn/a?b=c#d?e=f")
def test_query_shortcut_agrees_with_urllib(url: str) -> None:
    try:
        found: list[tuple[str, str]] | None = url_spellings._query_pairs(url)
    except ValueError:
        found = None
    assert found == _reference_pairs(url)


@pytest.mark.parametrize("bad", [*BAD_UTF8, b"\xef\xbf\xbe"])
@pytest.mark.parametrize("where", ["title", "cdata", "attribute", "comment", "tail"])
def test_bytes_that_are_not_utf8_make_the_fast_path_decline(bad: bytes, where: str) -> None:
    title = b"\xe6\xa0\x87" + (bad if where == "title" else b"")
    cdata = b"<p>x" + (bad if where == "cdata" else b"") + b"</p>"
    guid = b"g" + (bad if where == "attribute" else b"")
    comment = b"<!--" + (bad if where == "comment" else b"") + b"-->"
    tail = b"\n" + (bad if where == "tail" else b"")
    body = (
        PREPARED + b'\n<rss version="2.0"><channel><title>t</title>' + comment + b"<item>"
        b"<title>" + title + b"</title><guid isPermaLink='" + guid + b"'>g</guid>"
        b"<description><![CDATA[" + cdata + b"]]></description></item></channel></rss>" + tail
    )
    good = body.replace(bad, b"")
    assert fastparse.read(good, url=URL, content_type=fastparse._PREPARED_TYPE) is not None
    assert fastparse.read(body, url=URL, content_type=fastparse._PREPARED_TYPE) is None


def test_reading_without_digests_reads_the_same() -> None:
    corpus = Corpus(3, 4, seed=5)
    for feed in corpus.feeds:
        body, ctype = corpus.render(feed), feed.content_type
        full = fastparse.read(body, url=URL, content_type=ctype)
        bare = fastparse.read_undigested(body, url=URL, content_type=ctype)
        assert full is not None and bare is not None
        assert [e.fields for e in bare.entries] == [e.fields for e in full.entries]
        assert {e.digest for e in bare.entries} == {""}
        assert all(len(e.digest) == 40 for e in full.entries)
        assert replace(bare, entries=()) == replace(full, entries=())


# Entry digests are taken from the document's own bytes: (head, entry, tail) per form,
# the entry with slots for its title, number and body.
RSS10_HEAD = (
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
    ' xmlns="http://purl.org/rss/1.0/"><channel rdf:about="http://x.cn/">'
    "<title>{}</title><link>http://x.cn/</link></channel>"
)
ENTRY_FORMS = {
    "rss20": (
        '<rss version="2.0"><channel><title>{}</title>',
        "<item><title>{}</title><guid>g{}</guid><description>{}</description></item>",
        "</channel></rss>",
    ),
    "rss20, one <Item>": (
        '<rss version="2.0"><channel><title>{}</title><Item><title>x</title></Item>',
        "<item><title>{}</title><guid>g{}</guid><description>{}</description></item>",
        "</channel></rss>",
    ),
    "rss10": (
        RSS10_HEAD,
        '<item rdf:about="http://x.cn/{1}"><title>{0}</title><description>{2}</description></item>',
        "</rdf:RDF>",
    ),
    "atom": (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>{}</title>',
        '<entry><title>{}</title><id>http://x.cn/{}</id><content type="html">{}</content></entry>',
        "</feed>",
    ),
    "atom, prefixed": (
        '<a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:title>{}</a:title>',
        "<a:entry><a:title>{}</a:title><a:id>http://x.cn/{}</a:id>"
        '<a:content type="html">{}</a:content></a:entry>',
        "</a:feed>",
    ),
}
DECOYS = "&lt;item&gt; <item> <Item> <entry> <a:entry> </item> </entry> </a:entry>"
END_DECOYS = "</item> </entry> </a:entry>"  # end tags alone leave the bytes readable
ENTRY_BODIES = [
    "&lt;p&gt;正文&lt;/p&gt;",
    f"<![CDATA[{DECOYS}]]>",
    "",
    "三 &amp; 四",
    f"<![CDATA[{END_DECOYS} 后]]>",
]
BETWEEN = ["", "\n  ", f"<!-- {DECOYS} -->", f"<!-- {END_DECOYS} -->"]


def _feed(form: str, channel: str, titles: list[str], bodies: list[str], between: str) -> bytes:
    head, entry, tail = ENTRY_FORMS[form]
    entries = [entry.format(t, n, b) for n, (t, b) in enumerate(zip(titles, bodies, strict=True))]
    return (head.format(channel) + between.join(entries) + between + tail).encode()


def _entry_digests(body: bytes) -> list[str]:
    found = fastparse.read(body, url=URL, content_type="application/xml; charset=utf-8")
    assert found is not None
    return [e.digest for e in found.entries if e.fields["title"][0] != "x"]  # not <Item>


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(ENTRY_FORMS)),
    st.lists(st.sampled_from(ENTRY_BODIES), min_size=1, max_size=5),
    st.sampled_from(BETWEEN),
    st.data(),
)
def test_an_entrys_digest_follows_its_own_bytes(
    form: str, bodies: list[str], between: str, data: st.DataObject
) -> None:
    changed = data.draw(st.integers(0, len(bodies) - 1))
    titles = [f"标题{n}" for n in range(len(bodies))]
    before = _entry_digests(_feed(form, "频道", titles, bodies, between))
    retitled = [*titles[:changed], "改了", *titles[changed + 1 :]]
    after = _entry_digests(_feed(form, "另一个频道", retitled, bodies, between))
    assert len(set(before)) == len(before)
    assert after[changed] != before[changed]
    assert [d for n, d in enumerate(after) if n != changed] == [
        d for n, d in enumerate(before) if n != changed
    ]
    other = ENTRY_BODIES[(ENTRY_BODIES.index(bodies[changed]) + 1) % len(ENTRY_BODIES)]
    rewritten = [*bodies[:changed], other, *bodies[changed + 1 :]]
    assert (
        _entry_digests(_feed(form, "频道", titles, rewritten, between))[changed] != before[changed]
    )


def test_a_namespace_moved_changes_every_digest() -> None:
    """The same bytes under another namespace are other entries."""
    head, entry, tail = ENTRY_FORMS["atom, prefixed"]
    body = (head.format("c") + entry.format("t", 1, "b") + tail).encode()
    moved = body.replace(b"http://www.w3.org/2005/Atom", b"http://www.w3.org/2005/Atom#")
    assert fastparse.read(moved, url=URL, content_type=fastparse._PREPARED_TYPE) is None
    renamed = body.replace(b'xmlns:a="', b'xmlns:b="urn:x" xmlns:a="')
    assert _entry_digests(renamed) != _entry_digests(body)


# prepare() reuses a UTF-8 body's own bytes when reading them changed nothing.
PROLOG_PIECES = [
    "\ufeff",
    '<?xml version="1.0" encoding="utf-8"?>',
    "<?xml version='1.0' encoding='gbk'?>",
    '<?xml version="1.0"\u3000?>',
    " ",
    "\n",
    "\x01",
    "\x0c",
    "\ufffe",
    "<!-- 注释 -->",
    '<!DOCTYPE rss [<!ENTITY a "三">]>',
]
INSIDE_PIECES = ["标题", "&a;", "\x02", "\t", "\uffff", "\U0001f600", "\xe9", "<b/>"]
prologs = st.lists(st.sampled_from(PROLOG_PIECES), max_size=4).map("".join)
documents = st.lists(st.sampled_from(INSIDE_PIECES), max_size=6).map(
    lambda pieces: "<rss>" + "".join(pieces) + "</rss>"
)


def _prepared_the_long_way(body: bytes, content_type: str) -> bytes:
    """prepare()'s data as it is computed for every body: decode, strip, re-encode."""
    from aggregator.parse.encoding import decode
    from aggregator.parse.feed import _XML_DECLARATION
    from aggregator.parse.xmlguard import screen

    text = strip_control(decode(body, content_type).text).lstrip("\ufeff")
    declaration = _XML_DECLARATION.match(text)
    text = text[declaration.end() :] if declaration else text
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + screen(text).text.encode("utf-8")


@settings(max_examples=500)
@given(
    prologs,
    documents,
    st.sampled_from(["utf-8", "gb18030", "utf-8-sig"]),
    st.sampled_from(["", "application/rss+xml; charset=utf-8", "text/xml; charset=gbk"]),
)
def test_prepared_bytes_are_those_of_the_general_path(
    prolog: str, document: str, codec: str, content_type: str
) -> None:
    from aggregator.errors import ParseError
    from aggregator.parse.feed import prepare

    try:
        body = (prolog + document).encode(codec)
    except UnicodeEncodeError:
        return
    try:
        data = prepare(body, content_type).data
    except ParseError:
        return  # refused whole: the same checks run on both paths, in the same order
    assert data == _prepared_the_long_way(body, content_type)


def _seed_html() -> str:
    """The article HTML of the seed post (its body, paragraphs to the last </p>)."""
    seed = SEED.read_text(encoding="utf-8").split("---", 2)[2]
    return seed[seed.index("<p>") : seed.rindex("</p>") + len("</p>")]


SEED_HTML = _seed_html()


# Pieces of HTML near the shape the sanitizer's shortcut accepts, and just outside it.
HTML_PIECES = [
    *["<p>", "</p>", "<br>", "<strong>", "</strong>", "<b>", "</b>", "<em>", "</em>"],
    *["<i>", "</i>", "<span>", "</span>", '<p class="em_media">', '<span title="说明">'],
    *['<p class="a:b">', '<p lang="zh" dir="ltr">', "<p class='x'>", '<p  class="x">'],
    *['<p class="x" class="y">', '<p style="x">', '<p onclick="x">', "<P>", "<br/>"],
    *["<div>", "</div>", "<u>", "</u>", "<!-- c -->", "</a>", "<a>", "<img>"],
    *['<a href="http://finews.example.cn/NewsShare.html?infoCode=NW1">', '<a href="/x">'],
    *['<a href="x.html">', '<a href="//cdn.example.cn/x">', '<a href="javascript:x()">'],
    *['<a href="/a b">', '<a href="/a%20b?q=1;x">', '<a href="http://例子.cn/">'],
    *['<a href="HTTP://A.cn/">', '<a href="/./x">', '<a href="/x" rel="nofollow">'],
    *['<img src="/uploads/1.jpg" alt="图">', '<img src="/uploads/1.jpg">', '<img src="a.jpg">'],
    *['<img src="/u.jpg" alt="a:b">', '<img alt="图" src="/u.jpg">', '<img src="/u.jpg"/>'],
    *['<img src="http://example.cn:8080/u.jpg?s=1" alt="">', '<img src="data:x">'],
    *["三秦都市报", "新闻", " ", "\n", "\t", "&", "&amp;", "&#1;", "<", ">", '"', "'", ":"],
    *["\xa0", "\r", "\x01", "\x0c", "\x85", "\ufeff", "\U0001f600"],
    # As many CMSs write it: inline styles, &nbsp; indents, XHTML breaks, sized images.
    *['<p style="text-indent: 2em;">', '<p style="x" class="e">', '<p data-x="1">', "<br />"],
    *['<span style="font-family: 宋体;">', '<span lang="zh" style="a:b">', "<sub>", "</sub>"],
    *['<img src="/u.jpg" alt="图" width="600" height="400" border="0" />', '<img src="/u.jpg" />'],
    *['<img alt="a\x85b" src="/u.jpg">', '<img alt="\xa0">', '<img src="/u.jpg" alt="x"  />'],
    *['<a href="/x" target="_blank">', '<a target="_blank">', '<a title="t" href="/x" rel="x">'],
    *['<a hreflang="zh" href="/x">', '<a href="/x" hreflang="a:b">', '<p title="x&amp;y">'],
    *["&nbsp;", "&lt;", "&gt;", "&quot;", "&NBSP;", "&nbsp", "<sup>", "</sup>", '<p STYLE="x">'],
    *["<p style=x>", '<p style="a" >', "<br  />", '<p style="a\tb">', '<p style="<">'],
]
HTML_BASES = [
    "http://finews.example.cn/sanqin/0/",
    "https://example.cn",
    "",
    "ftp://x/",
    "http:///",
]


@settings(max_examples=2000)
@given(
    st.lists(st.sampled_from(HTML_PIECES), max_size=14).map("".join),
    st.sampled_from(HTML_BASES),
)
@example(SEED_HTML, HTML_BASES[0])
@example('<p class="em_media">（文章来源：三秦都市报）</p>', "")
@example('<p>原文：<a href="http://finews.example.cn/a?infoCode=NW1">链接</a></p>', HTML_BASES[0])
@example('<p><img src="/uploads/202112/2-9.jpg" alt="和她"></p>', HTML_BASES[0])
def test_html_of_a_known_shape_is_cleaned_as_nh3_cleans_it(fragment: str, base: str) -> None:
    """What the shortcut answers without nh3 is what nh3 answers."""
    _assert_cleaned_as_nh3_cleans(fragment, base)


def _assert_cleaned_as_nh3_cleans(fragment: str, base: str) -> None:
    known = sanitize._clean_known_shape(fragment, base)
    if known is not None:
        assert known == sanitize._nh3(fragment, base)
    assert clean_html(fragment, base=base) == _reference_clean_html(fragment, base)


# HTML built as CMSs nest it (paragraphs of inline tags within inline tags, links,
# images, breaks), its attributes and text drawn from values inside and just outside
# the wider shape: about a fifth of the fragments reach the shortcut, the rest nh3.
ATTRIBUTE_NAMES = ["style", "class", "alt", "src", "href", "width", "border", "target"] * 4 + [
    *["title", "lang", "dir", "height", "rel", "id", "data-x", "hreflang", "STYLE"],
]
ATTRIBUTE_VALUES = ["x", "600", "/u.jpg", "http://a.cn/x?y=1", "text-indent: 2em;"] * 10 + [
    *["", "宋体", "a:b", "a&amp;b", "?a&b", "\xa0", "\x85", "'", "javascript:x()", "//cdn/x"],
    *["x.html", "/a b", "mailto:x@y", "\u202e", "a\tb", "\ud800"],
]
TEXTS = ["三秦", "x", "&nbsp;", "&amp;", " ", "\n "] * 10 + [
    *["&lt;", "&gt;", "&quot;", "&", "\xa0", "\r", "\x01", "\ufeff", '"', ":", "\U0001f600"],
]
_attributes = st.lists(
    st.tuples(st.sampled_from(ATTRIBUTE_NAMES), st.sampled_from(ATTRIBUTE_VALUES)).map(
        lambda pair: f' {pair[0]}="{pair[1]}"'
    ),
    max_size=3,
).map("".join)
_text = st.lists(st.sampled_from(TEXTS), max_size=3).map("".join)
_leaf = st.one_of(
    _text,
    st.sampled_from(["<br>", "<br/>", "<br />", "<br  />"]),
    st.tuples(_attributes, _text).map(lambda t: f"<a{t[0]}>{t[1]}</a>"),
    st.tuples(_attributes, st.sampled_from([">", "/>", " />"])).map(lambda t: f"<img{''.join(t)}"),
)
_phrasing = st.recursive(
    _leaf,
    lambda inner: st.tuples(
        st.sampled_from(["strong", "b", "em", "i", "span", "u", "sub", "sup", "font"]),
        _attributes,
        st.lists(inner, max_size=3).map("".join),
    ).map(lambda t: f"<{t[0]}{t[1]}>{t[2]}</{t[0]}>"),
    max_leaves=8,
)
_paragraph = st.tuples(_attributes, st.lists(_phrasing, max_size=4).map("".join)).map(
    lambda t: f"<p{t[0]}>{t[1]}</p>"
)
_nested_html = st.lists(
    st.one_of(_paragraph, _phrasing, st.sampled_from(["<p>", "</p>", "</b>", "<div>"])),
    max_size=5,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_nested_html, st.sampled_from(HTML_BASES))
@example("<b><b><b>x</b></b></b>", "")
@example("<b><b><b><b>x</b></b></b></b>", "")
@example("<p><b>x</p><p>y</b></p>", "")
@example("<span><b>x</span></b>", "")
@example('<p class="a" class="b" style="c">x</p>', "")
def test_nested_html_of_the_wider_shape_is_cleaned_as_nh3_cleans_it(
    fragment: str, base: str
) -> None:
    _assert_cleaned_as_nh3_cleans(fragment, base)


def _reference_clean_html(fragment: str, base: str) -> str:
    """clean_html as it was before the shortcut (no length limit)."""
    if not fragment:
        return ""
    cleaned = sanitize._nh3(strip_control(fragment), base)
    return strip_control(cleaned) if "&#" in fragment else cleaned


@pytest.mark.parametrize("markup", MARKUPS)
def test_the_seed_articles_html_and_the_bench_corpus_take_the_shortcut(markup: str) -> None:
    assert sanitize._clean_known_shape(SEED_HTML, "") == SEED_HTML
    corpus = Corpus(2, 20, seed=1, markup=markup)
    for feed in corpus.feeds:
        raw = fastparse.read(corpus.render(feed), url="http://x.cn/f", content_type="")
        assert raw is not None
        for entry in raw.entries:
            body = (entry.fields.get("content") or entry.fields["summary"])[0]
            known = sanitize._clean_known_shape(body, "http://x.cn/f")
            assert known is not None
            assert known == sanitize._nh3(body, "http://x.cn/f")


def test_stacked_marks_are_cut_before_and_after_their_pattern_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pattern is built on first use; until then short texts are looked at one
    # character at a time, and past a budget of characters it is built anyway.
    monkeypatch.setattr(sanitize, "_STACKED_MARKS", None)
    monkeypatch.setattr(sanitize, "_looked_at", 0)
    stacked, kept = "三" + "\u0301" * 20 + "秦", "三" + "\u0301" * sanitize.MAX_MARKS + "秦"
    assert sanitize.display_safe("三秦都市报" * 10) == "三秦都市报" * 10
    assert sanitize._STACKED_MARKS is None  # a short text without a mark needs none
    assert (
        sanitize.display_safe("三秦" * sanitize._LOOKING_BUDGET)
        == "三秦" * sanitize._LOOKING_BUDGET
    )
    assert sanitize._STACKED_MARKS is not None  # past the budget: built
    assert sanitize.display_safe(stacked) == kept
    monkeypatch.setattr(sanitize, "_STACKED_MARKS", None)
    monkeypatch.setattr(sanitize, "_looked_at", 0)
    assert sanitize.display_safe(stacked) == kept  # a mark found: built at once
