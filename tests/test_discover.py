"""Feed autodiscovery and the proposals `sources add` makes. Pure functions."""

from __future__ import annotations

from aggregator.config.sourcefile import propose_id
from aggregator.fetch.discover import feed_links, looks_like_html, suggest_share_param
from tests.feeds import SHARE, Item, rss

PAGE = b"""<!DOCTYPE html>
<html><head>
<base href="https://news.example.cn/site/">
<link rel="stylesheet" href="style.css">
<link rel="alternate" type="application/feed+json" href="feed.json">
<link rel="alternate" type="application/atom+xml" href="/atom.xml" title="Atom">
<link rel="Alternate" type="application/rss+xml; charset=utf-8" href="rss.xml">
<link rel="alternate" type="text/html" hreflang="en" href="/en/">
<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
</head><body><a href="other.xml">feed</a></body></html>"""


def test_feed_links_in_preference_order_resolved_against_base() -> None:
    assert feed_links(PAGE, "https://news.example.cn/index.html") == [
        "https://news.example.cn/atom.xml",
        "https://news.example.cn/site/rss.xml",
        "https://news.example.cn/site/feed.json",
    ]


def test_no_links_in_a_page_without_them() -> None:
    assert feed_links(b"<html><body>hi</body></html>", "http://x/") == []
    assert feed_links(b"", "http://x/") == []


def test_looks_like_html() -> None:
    assert looks_like_html(b"<!doctype html><p>", "")
    assert looks_like_html(b"\xef\xbb\xbf <!-- c --><html>", "application/octet-stream")
    assert looks_like_html(b"", "text/html; charset=gbk")
    assert not looks_like_html(rss([]), "application/rss+xml")


def test_propose_id_from_name_host_and_collisions() -> None:
    assert propose_id("三秦都市报", "http://x/", set()) == "sanqin-dushibao"
    assert propose_id("三秦都市报", "http://x/", {"sanqin-dushibao"}) == "sanqin-dushibao-2"
    taken = {"sanqin-dushibao", "sanqin-dushibao-2"}
    assert propose_id("三秦都市报", "http://x/", taken) == "sanqin-dushibao-3"
    assert propose_id("", "https://www.hsb.example.cn/rss", set()) == "hsb-example-cn"
    assert propose_id("★★★", "https://feeds.example.org/", set()) == "feeds-example-org"
    assert len(propose_id("a" * 200, "http://x/", {"a" * 64})) == 64


def test_suggest_share_param() -> None:
    links = [Item(f"NW2021122400000{n}", "t", link_extra="&page=1").link for n in range(3)]
    assert suggest_share_param(links) == "infoCode"
    assert suggest_share_param([SHARE + "NW1"]) is None  # one link proves nothing
    assert suggest_share_param(["http://x/a/1.html", "http://x/a/2.html"]) is None
