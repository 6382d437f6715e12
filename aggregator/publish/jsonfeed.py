"""JSON Feed 1.1 (https://jsonfeed.org/version/1.1) versions of the published feeds.

The same documents as the Atom files, entry for entry: the current document
links to the newest archive page with ``next_url``, and each archive page to
the next older one, so a JSON reader can backfill too. Deterministic bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aggregator.config.loader import Config
from aggregator.parse.sanitize import plain_text
from aggregator.parse.xmlchars import strip_control
from aggregator.publish.documents import Document, EntryView, OutputFormat

VERSION = "https://jsonfeed.org/version/1.1"
SUMMARY_LENGTH = 500


def render_json_feed(doc: Document, config: Config) -> bytes:
    feed = json_head(doc, config)
    feed["items"] = [_item(view) for view in doc.entries]
    # Compact: the C encoder (indent would fall back to the slow pure-Python one).
    text = json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n"
    return strip_control(text).encode("utf-8", "replace")


def assemble_json(head: dict[str, Any], items: Sequence[bytes]) -> bytes:
    """The bytes render_json_feed gives, from the head and item_bytes of each entry."""
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    start = strip_control(text[:-1]).encode("utf-8", "replace")
    return b"".join((start, b',"items":[', b",".join(items), b"]}\n"))


def assemble_items(doc: Document, config: Config, items: Sequence[bytes]) -> bytes:
    return assemble_json(json_head(doc, config), items)


def items_bytes(views: Sequence[EntryView]) -> list[bytes]:
    return [item_bytes(view) for view in views]


def item_bytes(view: EntryView) -> bytes:
    """One entry's item as it stands in render_json_feed's output."""
    text = json.dumps(_item(view), ensure_ascii=False, separators=(",", ":"))
    return strip_control(text).encode("utf-8", "replace")


def write_content(content: str) -> bytes:
    """HTML content as item_bytes writes a string, without its quotes."""
    return json.dumps(content, ensure_ascii=False)[1:-1].encode("utf-8", "replace")


def json_head(doc: Document, config: Config) -> dict[str, Any]:
    """Everything of the document but its items."""
    settings = config.settings
    feed: dict[str, Any] = {
        "version": VERSION,
        "title": doc.info.title,
        "home_page_url": settings.base_url + "/",
        "feed_url": doc.self_url,
        "description": doc.subtitle,
        "language": settings.language,
        "authors": [{"name": settings.author}],
    }
    if doc.hub:
        feed["hubs"] = [{"type": "WebSub", "url": doc.hub}]
    # JSON Feed pages go from newer to older through next_url.
    if doc.prev_archive:
        feed["next_url"] = doc.prev_archive
    if doc.archive_number:
        feed["_archive"] = {"page": doc.archive_number, "current_url": doc.current_url}
    return feed


def _item(view: EntryView) -> dict[str, Any]:
    item: dict[str, Any] = {"id": view.id}
    if view.link:
        item["url"] = view.link
    item["title"] = view.title
    item["content_html"] = view.content
    if view.summary:
        item["summary"] = plain_text(view.summary, SUMMARY_LENGTH)
    item["date_published"] = view.published.isoformat()
    item["date_modified"] = view.updated.isoformat()
    author = view.author or (view.source.author if view.source else "")
    if author:
        item["authors"] = [{"name": author}]
    tags = list(dict.fromkeys(c.label for c in view.categories))
    if tags:
        item["tags"] = tags
    if view.enclosures:
        item["attachments"] = [
            {"url": url, "mime_type": mime or "application/octet-stream"}
            | ({"size_in_bytes": length} if length > 0 else {})
            for url, mime, length in view.enclosures
        ]
    if view.source:
        source = {"id": view.source.id, "title": view.source.title}
        if view.source.link:
            source["home_page_url"] = view.source.link
        if view.source.feed_url:
            source["feed_url"] = view.source.feed_url
        item["_source"] = source
    return item


JSON_FEED = OutputFormat(
    name="json",
    label="JSON Feed",
    suffix=".json",
    media_type="application/feed+json",
    render=render_json_feed,
    fragments=items_bytes,
    assemble=assemble_items,
    write_content=write_content,
    version="3",
)
