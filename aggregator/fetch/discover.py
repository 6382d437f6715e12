"""Finding a feed for a URL, and the share-code parameter its links suggest.

``feed_links`` reads the ``<link rel="alternate">`` elements of an HTML page
(feed autodiscovery). Pure functions; the fetching is done by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, urljoin, urlsplit

import lxml.html
from lxml import etree

FEED_TYPES = {
    "application/rss+xml": 0,
    "application/atom+xml": 0,
    "application/rdf+xml": 1,
    "application/feed+json": 2,
    "application/json": 3,
}
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)", re.I | re.S)


def looks_like_html(body: bytes, content_type: str = "") -> bool:
    if "html" in content_type.lower() and "xhtml+xml" not in content_type.lower():
        return True
    return bool(_HTML_START.match(body[:2048].lstrip(b"\xef\xbb\xbf")))


def feed_links(body: bytes, base_url: str) -> list[str]:
    """Feed URLs an HTML page announces, RSS/Atom first, in page order otherwise."""
    try:
        document = lxml.html.fromstring(body)
    except (etree.ParserError, ValueError):
        return []
    found: list[tuple[int, int, str]] = []
    base = base_url
    for element in document.iter("base"):
        if element.get("href"):
            base = urljoin(base_url, str(element.get("href")).strip())
            break
    for order, link in enumerate(document.iter("link")):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower().split(";")[0].strip()
        if "alternate" not in rel or kind not in FEED_TYPES:
            continue
        href = (link.get("href") or "").strip()
        if not href:
            continue
        url = urljoin(base, href)
        if urlsplit(url).scheme in ("http", "https", "file"):
            found.append((FEED_TYPES[kind], order, url))
    return list(dict.fromkeys(url for _, _, url in sorted(found)))


def suggest_share_param(links: Sequence[str]) -> str | None:
    """A query parameter every link carries, with a different value each time:
    likely the article's share code (``infoCode`` in NewsShare.html?infoCode=...)."""
    if len(links) < 2:
        return None
    queries = [dict(parse_qsl(urlsplit(link).query)) for link in links]
    common = set.intersection(*(set(query) for query in queries))
    distinct = [
        name for name in sorted(common) if len({query[name] for query in queries}) == len(queries)
    ]
    # The longest values are the likeliest codes (page numbers and ids are short).
    return max(distinct, key=lambda n: sum(len(q[n]) for q in queries), default=None)
