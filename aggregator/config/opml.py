"""OPML subscription lists in and out. Pure functions over bytes and plain data.

Import reads what feed readers export: Feedly, Inoreader, Miniflux, FreshRSS
and others all write one ``<outline>`` per feed (``xmlUrl``) inside folder
outlines. The outermost folder becomes the source's category; folders nested
inside it, and the OPML 2.0 ``category`` attribute, become tags.

Export writes the sources the same way, plus an ``aggregator:source``
attribute (JSON, in our own namespace, ignored by other readers) holding the
remaining keys, so that importing an export gives back the same sources. An
export may be shared: ``for_export`` leaves out what could hold a secret
(request headers, credentials in a URL) unless asked, and ``file:`` sources.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lxml import etree

from aggregator import PROJECT_URL
from aggregator.config.loader import feed_url_key
from aggregator.config.sourcefile import propose_id
from aggregator.errors import AggregatorError

NS = f"{PROJECT_URL}/opml"
_EXTRA = f"{{{NS}}}source"
# Keys carried by the standard attributes and the folder structure.
STANDARD_KEYS = ("name", "url", "category")
# Keys that may hold secrets (an Authorization header, an API token).
SECRET_KEYS = ("headers", "params", "body")  # params and body: an API key, a token
# FreshRSS "feeds" that scrape web pages: there is no feed to poll.
_SCRAPED_TYPES = ("xpath", "dotnotation")


class OpmlError(AggregatorError):
    """The file is not an OPML subscription list we can read."""


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    name: str
    category: str | None  # the outermost folder, if any
    tags: tuple[str, ...] = ()
    html_url: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # from aggregator:source


@dataclass
class OpmlImport:
    title: str = ""
    feeds: list[OpmlFeed] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def _attr(element: etree._Element, name: str) -> str:
    """An attribute by name, ignoring case (xmlUrl, xmlurl and XMLURL all occur)."""
    value: str | bytes | None = element.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in element.attrib.items() if str(k).lower() == wanted), None)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return (value or "").strip()


def _label(element: etree._Element) -> str:
    return _attr(element, "title") or _attr(element, "text")


def _category_attribute(value: str) -> list[str]:
    """OPML 2.0: comma-separated, slash-delimited paths such as "/News/Local,/Tech"."""
    names: list[str] = []
    for path in value.split(","):
        names.extend(part.strip() for part in path.split("/") if part.strip())
    return names


def _extra(element: etree._Element) -> dict[str, Any]:
    raw = element.get(_EXTRA)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _outlines(
    parent: etree._Element, folders: tuple[str, ...]
) -> Iterator[tuple[etree._Element, tuple[str, ...]]]:
    for element in parent:
        if not isinstance(element.tag, str) or etree.QName(element).localname != "outline":
            continue
        yield element, folders
        if not _attr(element, "xmlUrl"):
            label = _label(element)
            yield from _outlines(element, (*folders, label) if label else folders)
        else:
            yield from _outlines(element, folders)


def parse_opml(data: bytes) -> OpmlImport:
    """The feeds of an OPML document, with their folders. Raises OpmlError."""
    if b"<!ENTITY" in data:  # no exporter declares entities; they only serve attacks
        raise OpmlError("OPML with entity declarations is refused")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from None
    if etree.QName(root).localname.lower() != "opml":
        raise OpmlError(f"the root element is <{etree.QName(root).localname}>, not <opml>")
    body = next((e for e in root if isinstance(e.tag, str) and e.tag == "body"), None)
    if body is None:
        raise OpmlError("the OPML has no <body>")
    result = OpmlImport(title=root.findtext("head/title", default="").strip())
    for element, folders in _outlines(body, ()):
        url = _attr(element, "xmlUrl")
        if not url:
            continue
        name = _label(element)
        kind = _attr(element, "type").lower()
        if any(word in kind for word in _SCRAPED_TYPES):
            result.skipped.append((name or url, f"type {kind!r} scrapes a web page; not a feed"))
            continue
        if urlsplit(url).scheme not in ("http", "https", "file"):
            result.skipped.append((name or url, f"not an http(s) URL: {url}"))
            continue
        extra = _extra(element)
        tags = [*folders[1:], *_category_attribute(_attr(element, "category"))]
        if isinstance(extra.get("tags"), list):
            tags = [str(t) for t in extra.pop("tags")]
        result.feeds.append(
            OpmlFeed(
                url=url,
                name=name,
                category=folders[0] if folders else None,
                tags=tuple(dict.fromkeys(tags)),
                html_url=_attr(element, "htmlUrl"),
                extra={k: v for k, v in extra.items() if k not in STANDARD_KEYS},
            )
        )
    return result


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def for_export(
    sources: Sequence[Mapping[str, Any]], *, include_secrets: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """The [[sources]] tables as they may leave this machine, and a note for each thing
    left out: sources read from a file: URL (a path here, nothing another reader can
    fetch), and unless include_secrets, request headers and credentials in URLs."""
    exported: list[dict[str, Any]] = []
    notes: list[str] = []
    for table in sources:
        source = dict(table)
        name = source.get("id", source.get("url"))
        url = str(source.get("url", ""))
        if urlsplit(url).scheme == "file":
            notes.append(f"left out source {name!r}: a file: URL is a path on this machine")
            continue
        hidden = [] if include_secrets else [key for key in SECRET_KEYS if key in source]
        for key in hidden:
            del source[key]
        if not include_secrets and "@" in urlsplit(url).netloc:
            source["url"] = _without_credentials(url)
            hidden.append("the credentials in its URL")
        if hidden:
            notes.append(
                f"source {name!r}: left out {' and '.join(hidden)}, which may hold secrets "
                "(--include-secrets keeps them)"
            )
        exported.append(source)
    return exported, notes


def build_opml(
    sources: Sequence[Mapping[str, Any]],
    *,
    title: str,
    now: datetime,
    html_urls: Mapping[str, str] | None = None,
) -> bytes:
    """An OPML 2.0 document: one folder per category, one outline per source.

    `sources` are the [[sources]] tables as written in the config.
    """
    html_urls = html_urls or {}
    root = etree.Element("opml", version="2.0", nsmap={"aggregator": NS})
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(now)
    etree.SubElement(head, "docs").text = "https://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    folders: dict[str, etree._Element] = {}
    for source in sources:
        category = str(source["category"])
        if category not in folders:
            folders[category] = etree.SubElement(body, "outline", text=category, title=category)
        outline = etree.SubElement(folders[category], "outline")
        outline.set("type", "rss")
        outline.set("text", str(source["name"]))
        outline.set("title", str(source["name"]))
        outline.set("xmlUrl", str(source["url"]))
        if html_urls.get(str(source.get("id"))):
            outline.set("htmlUrl", html_urls[str(source["id"])])
        tags = source.get("tags") or []
        tags = [tags] if isinstance(tags, str) else list(tags)
        if tags:
            outline.set("category", ",".join(f"/{t}" for t in tags))
        extra = {k: v for k, v in source.items() if k not in STANDARD_KEYS}
        outline.set(_EXTRA, json.dumps(extra, ensure_ascii=False, sort_keys=True))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def plan_import(
    feeds: list[OpmlFeed], existing: list[dict[str, Any]], default_category: str
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The [[sources]] tables to add, and the feeds skipped with the reason. Pure."""
    urls = {feed_url_key(str(s.get("url", ""))): str(s.get("id")) for s in existing}
    taken = {str(s.get("id")) for s in existing}
    added: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for feed in feeds:
        key = feed_url_key(feed.url)
        if key in urls:
            skipped.append((feed.url, f"already configured, as source {urls[key]!r}"))
            continue
        name = feed.name or urlsplit(feed.url).hostname or feed.url
        wanted = feed.extra.get("id")
        source_id = (
            wanted
            if isinstance(wanted, str) and wanted not in taken
            else propose_id(name, feed.url, taken)
        )
        values: dict[str, Any] = {
            "id": source_id,
            "name": name,
            "url": feed.url,
            "category": feed.category or default_category,
        }
        if feed.tags:
            values["tags"] = list(feed.tags)
        values.update({k: v for k, v in feed.extra.items() if k not in values})
        taken.add(source_id)
        urls[key] = source_id
        added.append(values)
    return added, skipped
