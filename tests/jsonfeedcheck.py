"""Check a JSON Feed 1.1 document: required fields and the types the spec gives."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests import atomcheck

VERSION = "https://jsonfeed.org/version/1.1"
TOP_LEVEL = {
    "version",
    "title",
    "home_page_url",
    "feed_url",
    "description",
    "user_comment",
    "next_url",
    "icon",
    "favicon",
    "authors",
    "language",
    "expired",
    "hubs",
    "items",
}
ITEM = {
    "id",
    "url",
    "external_url",
    "title",
    "content_html",
    "content_text",
    "summary",
    "image",
    "banner_image",
    "date_published",
    "date_modified",
    "authors",
    "tags",
    "language",
    "attachments",
}


def _date(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _authors(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(a, dict) and any(isinstance(a.get(k), str) for k in ("name", "url", "avatar"))
        for a in value
    )


def problems(data: bytes) -> list[str]:
    found: list[str] = []
    feed = json.loads(data.decode("utf-8"))
    if feed.get("version") != VERSION:
        found.append(f"version is {feed.get('version')!r}")
    if not isinstance(feed.get("title"), str) or not feed["title"]:
        found.append("no title")
    for key in feed:
        if key not in TOP_LEVEL and not key.startswith("_"):
            found.append(f"unknown top-level key {key!r} (extensions start with _)")
    for key in ("home_page_url", "feed_url", "next_url", "description", "language"):
        if key in feed and not isinstance(feed[key], str):
            found.append(f"{key} is not a string")
    if "authors" in feed and not _authors(feed["authors"]):
        found.append("bad feed authors")
    for hub in feed.get("hubs", []):
        if not (isinstance(hub.get("type"), str) and isinstance(hub.get("url"), str)):
            found.append(f"bad hub {hub!r}")
    items = feed.get("items")
    if not isinstance(items, list):
        return [*found, "items is not a list"]
    ids = []
    for item in items:
        ids.append(item.get("id"))
        if not isinstance(item.get("id"), str) or not item["id"]:
            found.append(f"item without a string id: {item!r:.80}")
        if not any(isinstance(item.get(k), str) for k in ("content_html", "content_text")):
            found.append(f"item {item.get('id')} has neither content_html nor content_text")
        for key in item:
            if key not in ITEM and not key.startswith("_"):
                found.append(f"item {item.get('id')}: unknown key {key!r}")
        for key in ("date_published", "date_modified"):
            if key in item and not _date(item[key]):
                found.append(f"item {item.get('id')}: {key} is not RFC 3339")
        if "authors" in item and not _authors(item["authors"]):
            found.append(f"item {item.get('id')}: bad authors")
        if "tags" in item and not all(isinstance(t, str) for t in item["tags"]):
            found.append(f"item {item.get('id')}: tags are not strings")
        for attachment in item.get("attachments", []):
            if not (
                isinstance(attachment.get("url"), str)
                and isinstance(attachment.get("mime_type"), str)
            ):
                found.append(f"item {item.get('id')}: attachment without url and mime_type")
            if "size_in_bytes" in attachment and not isinstance(attachment["size_in_bytes"], int):
                found.append(f"item {item.get('id')}: size_in_bytes is not a number")
    if len(ids) != len(set(ids)):
        found.append("duplicate item ids")
    uris = [f"not a URI: {problem}" for problem in map(_uri_problem, _urls(feed)) if problem]
    return found + uris


def _urls(feed: dict[str, Any]) -> list[Any]:
    """Every URL the document holds: the feed's, the items', their attachments' and sources'."""
    urls = [feed.get(key) for key in ("home_page_url", "feed_url", "next_url")]
    for item in feed.get("items") or []:
        urls += [item.get("url"), item.get("external_url")]
        urls += [a.get("url") for a in item.get("attachments", []) if isinstance(a, dict)]
        source = item.get("_source") or {}
        urls += [source.get("home_page_url"), source.get("feed_url")]
    return [url for url in urls if url is not None]


def _uri_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return f"{url!r} is not a string"
    return atomcheck.w3c_uri_problem(url, full=False)


def assert_valid(data: bytes) -> None:
    found = problems(data)
    assert not found, "\n".join(found)
