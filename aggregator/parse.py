"""Turn feed bytes into normalised entries.

feedparser reads the bytes (never a URL), told the response's content type and
location so it can pick the right charset and resolve relative links. What it
returns is then made safe: sanitized HTML, plain-text titles, absolute http(s)
URLs, sane dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import feedparser

from aggregator import fastparse
from aggregator.dates import entry_date, sane
from aggregator.errors import ParseError
from aggregator.models import Enclosure, EntryRecord, ParsedFeed
from aggregator.sanitize import absolute_http_url, clean_html, plain_text, strip_control

MAX_TITLE = 1000
MAX_CONTENT = 1_000_000
MAX_SUMMARY = 100_000


def _content_html(entry: Mapping[str, Any]) -> str:
    contents = entry.get("content") or []
    html_parts = [c for c in contents if "html" in (c.get("type") or "")]
    chosen = html_parts or contents
    if chosen:
        return str(chosen[0].get("value") or "")
    return ""


def _enclosures(entry: Mapping[str, Any], base: str) -> tuple[Enclosure, ...]:
    found: dict[str, Enclosure] = {}
    for enclosure in entry.get("enclosures") or []:
        url = absolute_http_url(enclosure.get("href") or enclosure.get("url") or "", base)
        if not url:
            continue
        length = str(enclosure.get("length") or "0").strip()
        found.setdefault(
            url,
            Enclosure(
                url, plain_text(enclosure.get("type") or ""), int(length) if length.isdigit() else 0
            ),
        )
    return tuple(found.values())


def _entry(raw: dict[str, Any], base: str, tz: str, seen_at: datetime) -> EntryRecord:
    link = absolute_http_url(raw.get("link") or "", base)
    content = _content_html(raw)
    summary = str(raw.get("summary") or "")
    # dict.get: FeedParserDict.get would map a missing `updated` to `published`.
    published = entry_date(dict.get(raw, "published"), dict.get(raw, "published_parsed"), tz)
    updated = entry_date(dict.get(raw, "updated"), dict.get(raw, "updated_parsed"), tz)
    author = raw.get("author") or (raw.get("author_detail") or {}).get("name") or ""
    terms = (t.get("term") or t.get("label") or "" for t in raw.get("tags") or [])
    return EntryRecord(
        guid=strip_control(str(raw.get("id") or "")).strip(),
        title=plain_text(str(raw.get("title") or ""), MAX_TITLE),
        link=link,
        published=sane(published, seen_at),
        updated=sane(updated, seen_at),
        author=plain_text(author, 200),
        # RSS often has only <description>: then it is the content, not a summary.
        summary=clean_html(summary, MAX_SUMMARY) if content and summary != content else "",
        content=clean_html(content or summary, MAX_CONTENT),
        categories=tuple(dict.fromkeys(c for c in (plain_text(t, 200) for t in terms) if c)),
        enclosures=_enclosures(raw, base),
    )


def parse_feed(
    body: bytes,
    *,
    url: str = "",
    content_type: str = "",
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    fast: bool = True,
) -> ParsedFeed:
    """Parse one feed document. Raises ParseError when it is not a feed."""
    if not body.strip():
        raise ParseError("the body is empty")
    if fast:  # well-formed RSS/Atom through lxml; anything else through feedparser
        quick = fastparse.parse_fast(
            body,
            url=url,
            content_type=content_type,
            timezone=timezone,
            seen_at=seen_at,
            build=_entry,
        )
        if quick is not None:
            return quick
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(
        body, response_headers=headers, sanitize_html=False, resolve_relative_uris=True
    )
    if not parsed.get("version"):
        # feedparser's bozo flag alone does not tell an HTML page from a feed.
        reason = parsed.get("bozo_exception")
        raise ParseError(f"not a feed{': ' + str(reason) if reason else ''}")
    feed = parsed.get("feed", {})
    base = url if url.startswith(("http://", "https://")) else ""
    link = absolute_http_url(feed.get("link") or "", base)
    ttl = str(feed.get("ttl") or "").strip()
    entries = tuple(_entry(e, base, timezone, seen_at) for e in parsed.get("entries", []))
    return ParsedFeed(
        version=str(parsed.get("version")),
        title=plain_text(feed.get("title") or "", MAX_TITLE),
        link=link,
        feed_id=strip_control(str(feed.get("id") or link or url)).strip(),
        entries=entries,
        ttl_minutes=int(ttl) if ttl.isdigit() else None,
    )
