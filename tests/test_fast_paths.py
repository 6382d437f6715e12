"""The parse path's shortcuts answer exactly as the general code they stand in for.

Each shortcut (plain URLs in the sanitizer, common date shapes, ...) is checked
against the slow, general function on many generated values, including the
awkward ones: odd schemes, whitespace and controls, dot segments, odd bases.
"""

from __future__ import annotations

from feedparser.urls import _urljoin, make_safe_absolute_uri
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aggregator import fastparse, sanitize
from aggregator.sanitize import (
    URL_ATTRIBUTES,
    _attribute_filter,
    _joined_http_url,
    absolute_http_url,
    clean_html,
    http_join,
)

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
HOSTS = ["x.cn", "X.CN", "a.b:80", "a.b:", ":80", "", "u@h", "[::1]", "-", "h_x"]
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
        return _joined_http_url(value, base) or None
    return value


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
    if base:  # _rewrite_tag only joins against a base
        assert fastparse._safe_join(base, url) == make_safe_absolute_uri(base, url)
