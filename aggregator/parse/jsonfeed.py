"""Read JSON Feed documents (https://jsonfeed.org, versions 1 and 1.1) into the same
entries an RSS or Atom feed gives.

feedparser reads no JSON, so each item is mapped onto the fields feedparser would
have given for the equivalent Atom entry, and then goes through the very same
normalisation (parse.entry_from_fields): sanitized HTML, plain-text titles, absolute
http(s) URLs, dates read as the XML path reads them, fields cut to their limits.
The whole document is read with the standard library's C decoder: linear in the
size (which the fetcher caps), no entities to expand; nesting too deep for it is
refused like any other broken document.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aggregator.errors import ParseError
from aggregator.models import ParsedFeed
from aggregator.parse.dates import feedparser_date
from aggregator.parse.feed import entry_from_fields
from aggregator.parse.limits import MAX_GUID, FieldLimits
from aggregator.parse.sanitize import absolute_http_url, http_base, plain_text
from aggregator.parse.xmlchars import strip_control

VERSION_PREFIX = "https://jsonfeed.org/version/"
JSON_TYPES = ("application/feed+json", "application/json")


def looks_like_json(body: bytes, content_type: str = "") -> bool:
    """A JSON document: said so by the Content-Type, or an object where XML would start."""
    mime = content_type.partition(";")[0].strip().lower()
    if mime in JSON_TYPES:
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def parse_json_feed(
    body: bytes,
    *,
    url: str = "",
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: FieldLimits | None = None,
) -> ParsedFeed:
    """The feed and its entries. Raises ParseError when the body is not a JSON Feed."""
    limits = limits or FieldLimits()
    document = _decoded(body)
    version = document.get("version")
    if not isinstance(version, str) or not version.startswith(VERSION_PREFIX):
        raise ParseError("not a feed: a JSON document without a JSON Feed version")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("not a feed: a JSON Feed without a list of items")
    base = http_base(url)
    link = absolute_http_url(_text(document.get("home_page_url")), base)
    feed_url = absolute_http_url(_text(document.get("feed_url")), base)
    entries = tuple(
        entry_from_fields(_fields(item), _item_base(item, base), timezone, seen_at, limits)
        for item in items[: limits.entries]
        if isinstance(item, Mapping)
    )
    return ParsedFeed(
        version="json" + version.removeprefix(VERSION_PREFIX).replace(".", ""),
        title=plain_text(html.escape(_text(document.get("title"))), limits.title),
        link=link,
        feed_id=strip_control(feed_url or link or url).strip()[:MAX_GUID],
        entries=entries,
    )


def _decoded(body: bytes) -> Mapping[str, Any]:
    try:
        # JSON is UTF-8 (RFC 8259); a byte order mark is tolerated.
        document = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ParseError(f"not a feed: JSON that is not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ParseError("not a feed: JSON nested too deep") from None
    except ValueError as exc:
        raise ParseError(f"not a feed: broken JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ParseError("not a feed: a JSON document that is not an object")
    return document


def _text(value: Any) -> str:
    """A string field as text; numbers (some generators write ids so) as their digits;
    anything else, as nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _item_base(item: Mapping[str, Any], feed_base: str) -> str:
    """Relative URLs in an item resolve against its own absolute URL, if it has one."""
    own = absolute_http_url(_text(item.get("url")), feed_base)
    return own or feed_base


def _fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item as the feedparser-style fields entry_from_fields reads. JSON Feed text
    fields are plain text, so they are escaped into the HTML those fields carry."""
    fields: dict[str, Any] = {
        "id": _text(item.get("id")),
        "link": _text(item.get("url")) or _text(item.get("external_url")),
        "title": html.escape(_text(item.get("title")), quote=False),
        "tags": [{"term": _text(tag)} for tag in _list(item.get("tags")) if _text(tag)],
        "enclosures": [
            {
                "href": _text(a.get("url")),
                "type": _text(a.get("mime_type")),
                "length": _text(a.get("size_in_bytes")),
            }
            for a in _list(item.get("attachments"))
            if isinstance(a, Mapping)
        ],
    }
    content = _text(item.get("content_html"))
    if not content and _text(item.get("content_text")):
        content = _paragraphs(_text(item.get("content_text")))
    if content:
        fields["content"] = [{"type": "text/html", "value": content}]
    summary = _text(item.get("summary"))
    fields["summary"] = html.escape(summary, quote=False) if summary else content
    for key, name in (("published", "date_published"), ("updated", "date_modified")):
        value = _text(item.get(name))
        if value:
            fields[key] = value
            fields[f"{key}_parsed"] = feedparser_date(value)
    fields["author"] = _author(item)
    return fields


def _paragraphs(text: str) -> str:
    """Plain text as HTML: escaped, a paragraph per blank-line-separated block."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(
        "<p>" + html.escape(b, quote=False).replace("\n", "<br>") + "</p>" for b in blocks if b
    )


def _author(item: Mapping[str, Any]) -> str:
    """The first author's name: `authors` (1.1) or `author` (1.0)."""
    candidates = [*_list(item.get("authors")), item.get("author")]
    for author in candidates:
        if isinstance(author, Mapping) and _text(author.get("name")):
            return _text(author.get("name"))
    return ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
