"""A fast path for well-formed RSS 2.0, RSS 1.0 and Atom 1.0: lxml instead of feedparser.

feedparser spends most of its time in its SAX handlers. For the common,
well-formed feed this module reads the tree with lxml and rebuilds exactly the
entry dictionaries feedparser would have built (told, like here, to leave HTML
as it came: relative URLs inside it are resolved by the sanitizer), then hands
them to the same normalisation as the slow path (parse.entry_from_fields: nh3
sanitizing, plain-text titles, absolute URLs, dates in the source's zone). Where
feedparser's own rules matter (character encoding, URI joining, date formats)
its functions are called, so the two paths cannot drift apart;
tests/test_fastparse_diff.py proves they agree on every feed in the test corpus.

Anything this reader does not accept cleanly -- a DTD or entity declaration, an
XML error, xml:base, an element it does not know, an unusual content type, a
repeated single-valued element -- makes it answer None, and the caller falls back
to feedparser. Hostile input never gets further than lxml's parser, which is told
not to resolve entities, not to touch the network and not to lift its size limits.

Each entry also carries a digest of its raw XML, so a poll can recognise entries
it has already stored and skip all the expensive work on them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin
from lxml import etree

from aggregator.models import EntryRecord
from aggregator.parse.dates import feedparser_date
from aggregator.parse.sanitize import http_base, http_join

# Bump when the fast path's output for the same bytes changes: stored raw digests
# from an older version then no longer match, and entries are processed again.
# (Left at "1" when relative URLs in HTML moved from feedparser's pass to the
# sanitizer: the same HTML but for the order of attributes, and processing every
# stored entry again would count each one as edited. "2": escaped text in RSS titles
# kept, display hazards removed, impossible zones refused, raw dates kept; only
# entries whose title or dates read differently count as edited.)
FAST_VERSION = "2"

ATOM = "http://www.w3.org/2005/Atom"
RSS10 = "http://purl.org/rss/1.0/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
DC = "http://purl.org/dc/elements/1.1/"
DCTERMS = "http://purl.org/dc/terms/"
SY = "http://purl.org/rss/1.0/modules/syndication/"
WFW = "http://wellformedweb.org/CommentAPI/"
SLASH = "http://purl.org/rss/1.0/modules/slash/"

HTML_TYPES = {"text/html", "application/xhtml+xml"}

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    remove_comments=True,
    remove_pis=True,
    recover=False,
)
_DOCTYPE = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
# Found in the lower-cased body, the character before checked by hand: a pattern
# that starts with a character class is many times slower to search for.
_BASE_ATTR = re.compile(rb"base\s*=")
_BEFORE_BASE = frozenset(b" \t\n\r\f\v:")
_LINK_ENTITY = re.compile(r"&([A-Za-z0-9_]+);")
_C1 = re.compile("[\x80-\x9f]")
# An absolute http(s) URL that urljoin gives back unchanged, whatever the base (if it
# parses); its host is plain ASCII, which urlsplit cannot refuse.
_PLAIN_URL = re.compile(
    r"https?://[-A-Za-z0-9.:@%!$&'()*+,=_~]+(?:/[^?#\s;\\]*)?(?:\?[^#\s\\]+)?\Z"
)


class Unsupported(Exception):
    """This document is not for the fast path; feedparser reads it instead."""


@dataclass(frozen=True)
class RawEntry:
    """One entry as read from the tree, before the expensive normalisation."""

    fields: dict[str, Any]
    # sha1 of the entry's raw XML, the fast path's version, the base URL and the
    # namespaces in scope (see _digests; "" from read_undigested, for callers that
    # normalise every entry anyway)
    digest: str


@dataclass(frozen=True)
class RawFeed:
    version: str
    title: str
    link: str
    feed_id: str
    ttl: str
    base: str  # feedparser's base URI: the document's URL
    entries: tuple[RawEntry, ...]
    syndication: tuple[tuple[str, str], ...] = ()  # sy:updatePeriod/updateFrequency as read
    title_type: str = "text/plain"  # as feedparser's title_detail would give it


# --- text as feedparser's pop() leaves it ----------------------------------------------


def _looks_like_html(text: str) -> bool:
    # feedparser's test needs a close tag or an entity: without "<" or "&", no.
    return ("<" in text or "&" in text) and bool(_FeedParserMixin.looks_like_html(text))


def _finish(text: str) -> str:
    """feedparser's last touches on every value: undo UTF-8 read as Latin-1, map C1
    controls to their windows-1252 characters."""
    # Both touches need a character in U+0080-U+00FF: CJK text has none, mostly. The
    # encoding keeps exactly the characters up to U+00FF, and is faster than a search.
    if not text.isascii() and not text.encode("latin-1", "ignore").isascii():
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            text = text.encode("iso-8859-1").decode("utf-8")
        if _C1.search(text):
            text = text.translate(_cp1252)
    return text


@functools.lru_cache(maxsize=64)
def _parses(base: str) -> bool:
    """Whether urljoin can read the base at all (else feedparser's join gives "")."""
    try:
        urlsplit(base)
    except ValueError:
        return False
    return True


def _join(base: str, value: str) -> str:
    """feedparser's _urljoin, without the cost for URLs that are already absolute or
    plain absolute paths (its URI fixer leaves both alone)."""
    if _PLAIN_URL.match(value) and "/." not in value and _parses(base):
        return value
    joined = http_join(base, value) if base else None
    return str(_urljoin(base, value)) if joined is None else joined


def _map_type(value: str) -> str:
    value = value.lower()
    return {
        "text": "text/plain",
        "plain": "text/plain",
        "html": "text/html",
        "xhtml": "application/xhtml+xml",
    }.get(value, value)


# --- reading the tree ------------------------------------------------------------------


def _text(element: etree._Element) -> str:
    if len(element):
        raise Unsupported("markup inside a text element")
    return (element.text or "").strip()


def _attrs(element: etree._Element) -> dict[str, str]:
    """Attributes as feedparser sees them: lower-case names, lower-case rel and type."""
    found: dict[str, str] = {}
    for name, value in element.attrib.items():
        key = str(name)
        if key.startswith("{"):
            continue  # namespaced (xml:lang, rdf:about): none of the attributes we read
        key = key.lower()
        text = str(value)
        found[key] = text.lower() if key in ("rel", "type") else text
    return found


_NAMES: dict[str, tuple[str, str]] = {}  # a few dozen names in practice; bounded anyway


def _name(element: etree._Element) -> tuple[str, str]:
    tag = element.tag
    if not isinstance(tag, str):
        raise Unsupported("unexpected node")
    found = _NAMES.get(tag)
    if found is None:
        if tag[0] == "{":
            namespace, _, local = tag[1:].partition("}")
            found = namespace, local.lower()
        else:
            found = "", tag.lower()
        if len(_NAMES) < 2048:
            _NAMES[tag] = found
    return found


class _Entry:
    """Accumulates one entry the way feedparser's handlers would."""

    SINGLE = frozenset(
        {"title", "link", "id", "summary", "content", "published", "updated", "rss_author"}
    )

    def __init__(self, base: str) -> None:
        self.base = base
        self.raw: dict[str, Any] = {}
        self.seen: set[str] = set()
        self.tags: list[dict[str, str | None]] = []
        self.links: list[dict[str, str]] = []

    def once(self, key: str) -> None:
        if key in self.seen:
            raise Unsupported(f"repeated {key}")
        self.seen.add(key)

    def add_tag(self, term: str | None, scheme: str | None, label: str | None) -> None:
        if not term and not scheme and not label:
            return
        value = {"term": term, "scheme": scheme, "label": label}
        if value not in self.tags:
            self.tags.append(value)

    def category(self, element: etree._Element) -> None:
        attrs = _attrs(element)
        self.add_tag(
            attrs.get("term"), attrs.get("scheme", attrs.get("domain")), attrs.get("label")
        )
        value = _finish(_text(element))
        if not value:
            return
        if self.tags and not self.tags[-1]["term"]:
            self.tags[-1]["term"] = value
        else:
            self.add_tag(value, None, None)

    def guid(self, element: etree._Element, is_link: bool) -> None:
        self.once("id")
        value = _text(element)
        if value and is_link:
            value = _join(self.base, value)
        value = _finish(value)
        self.raw["id"] = value
        if is_link:
            self.raw.setdefault("link", value)

    def link_text(self, element: etree._Element) -> None:
        self.once("link")
        value = _text(element)
        if value:
            value = _join(self.base, value)
        value = _finish(value).replace("&amp;", "&")
        self.raw["link"] = _LINK_ENTITY.sub(r"&\g<1>", value)

    def link_attr(self, element: etree._Element) -> None:
        href, rel, mime = _link_parts(element)
        href = _join(self.base, href)
        if rel == "enclosure":
            self.links.append(
                {"href": href, "type": mime, "length": _attrs(element).get("length", "")}
            )
        elif rel == "alternate" and _map_type(mime) in HTML_TYPES:
            self.raw["link"] = href

    def enclosure(self, element: etree._Element) -> None:
        attrs = _attrs(element)
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        found = {k: v for k, v in attrs.items() if k not in ("url", "uri", "href")}
        if href:
            found["href"] = href
        self.links.append(found)

    def text_construct(self, key: str, element: etree._Element, default: str, atom: bool) -> None:
        self.once(key)
        attrs = _attrs(element)
        if "src" in attrs or attrs.get("mode") == "base64" or "base64" in attrs.get("mode", ""):
            raise Unsupported("out-of-line or encoded content")
        ctype = _map_type(attrs.get("type", default))
        if ctype not in HTML_TYPES and ctype != "text/plain":
            raise Unsupported(f"content of type {ctype}")
        if ctype == "application/xhtml+xml":
            raise Unsupported("xhtml content")
        self.raw[key] = (_text(element), ctype, not atom)

    def date(self, key: str, element: etree._Element) -> None:
        self.once(key)
        self.raw[key] = _finish(_text(element))

    def finish(self) -> dict[str, Any]:
        raw = self.raw
        raw["tags"] = self.tags
        raw["enclosures"] = self.links
        return raw


def _rss_item(item: etree._Element, base: str, rdf: bool) -> dict[str, Any]:
    entry = _Entry(base)
    if rdf:
        about = item.get(f"{{{RDF}}}about")
        if about:
            entry.raw["id"] = about
            entry.seen.add("id")
    plain = RSS10 if rdf else ""
    for child in item:
        namespace, local = _name(child)
        if namespace == plain:
            if local == "title":
                entry.text_construct("title", child, "text/plain", atom=False)
            elif local == "link":
                entry.link_text(child)
            elif local == "description":
                entry.text_construct("summary", child, "text/html", atom=False)
            elif local == "guid" and not rdf:
                is_link = _attrs(child).get("ispermalink", "true") == "true"
                entry.guid(child, is_link)
            elif local == "pubdate" and not rdf:
                entry.date("published", child)
            elif local == "author" and not rdf:
                entry.once("rss_author")
                entry.raw["author"] = _finish(_text(child))
            elif local == "category" and not rdf:
                entry.category(child)
            elif local == "enclosure" and not rdf:
                entry.enclosure(child)
            elif local == "comments":
                continue
            else:
                raise Unsupported(f"item element {local}")
        elif namespace == CONTENT and local == "encoded":
            entry.text_construct("content", child, "text/html", atom=False)
        elif namespace == DC and local == "creator":
            entry.once("rss_author")
            entry.raw["author"] = _finish(_text(child))
        elif namespace == DC and local == "date":
            entry.date("updated", child)
        elif namespace == DC and local == "subject":
            entry.category(child)
        elif namespace in (WFW, SLASH):
            continue
        else:
            raise Unsupported(f"item element {{{namespace}}}{local}")
    return entry.finish()


def _atom_author(element: etree._Element) -> str:
    name = email = ""
    for child in element:
        namespace, local = _name(child)
        if namespace != ATOM or local not in ("name", "email", "uri"):
            raise Unsupported(f"author element {local}")
        if local == "name":
            name = _finish(_text(child))
        elif local == "email":
            email = _finish(_text(child))
    if name and email:
        return f"{name} ({email})"
    return name or email


def _atom_entry(item: etree._Element, base: str) -> dict[str, Any]:
    entry = _Entry(base)
    for child in item:
        namespace, local = _name(child)
        if namespace != ATOM:
            raise Unsupported(f"entry element {{{namespace}}}{local}")
        if local == "title":
            entry.text_construct("title", child, "text/plain", atom=True)
        elif local == "id":
            entry.guid(child, is_link=True)
        elif local == "link":
            entry.link_attr(child)
        elif local == "published":
            entry.date("published", child)
        elif local == "updated":
            entry.date("updated", child)
        elif local == "summary":
            entry.text_construct("summary", child, "text/plain", atom=True)
        elif local == "content":
            entry.text_construct("content", child, "text/plain", atom=True)
        elif local == "author":
            entry.once("atom_author")  # several: feedparser mixes their details
            entry.raw["author"] = _atom_author(child)
        elif local == "category":
            entry.category(child)
        elif local == "rights":
            continue
        else:
            raise Unsupported(f"entry element {local}")
    return entry.finish()


# --- the document ----------------------------------------------------------------------


# A document's entry elements (children of one parent, in document order) -> their
# digests. Made per document by _read: it needs the document's bytes and base.
Digests = Callable[[list[etree._Element]], list[str]]


def _no_digests(entries: list[etree._Element]) -> list[str]:
    return [""] * len(entries)


def _digests(data: bytes, base: str, entries: list[etree._Element]) -> list[str]:
    """sha1 of the fast path's version, the base URL, the namespaces in scope around
    the entries and each entry's own bytes, from its start tag to its end tag
    (serialising each entry again cost more than parsing it). When the entries' start
    tags differ (<item>, <Item>), or one is also found where no entry starts (in text
    or a comment), the bytes cannot be told apart: the entries are serialised."""
    if not entries:
        return []
    first = entries[0]
    parent = first.getparent()
    assert parent is not None  # entries are never the root
    scope = sorted((prefix or "", uri) for prefix, uri in parent.nsmap.items())
    salt = hashlib.sha1(f"{FAST_VERSION}\x00{base}\x00{scope}\x00".encode())
    name = etree.QName(first).localname
    qname = f"{first.prefix}:{name}" if first.prefix else name
    starts = _tag_starts(data, f"<{qname}".encode())
    same_tags = all(e.tag == first.tag and e.prefix == first.prefix for e in entries)
    # Each entry's start tag is found; with no others, they are the entries', in order.
    if not same_tags or len(starts) != len(entries):
        parts: list[bytes | memoryview] = [etree.tostring(e, encoding="utf-8") for e in entries]
    else:
        view = memoryview(data)
        closing = f"</{qname}".encode()
        parts = []
        for start, limit in zip(starts, [*starts[1:], len(data)], strict=True):
            # The entry ends before the next starts: at the last end tag of its name
            # there, or beyond (in a comment, say), so no byte of it is left out.
            end = data.rfind(closing, start, limit)
            parts.append(view[start : end + len(closing) if end >= 0 else limit])
    found = []
    for part in parts:
        digest = salt.copy()
        digest.update(part)
        found.append(digest.hexdigest())
    return found


_AFTER_TAG_NAME = frozenset(b" \t\r\n/>")


def _tag_starts(data: bytes, tag: bytes) -> list[int]:
    """Where `tag` (b"<item", say) is followed by what may end a tag's name."""
    starts = []
    at = data.find(tag)
    while at >= 0:
        after = at + len(tag)
        if after < len(data) and data[after] in _AFTER_TAG_NAME:
            starts.append(at)
        at = data.find(tag, after)
    return starts


# What parse.prepare hands over: UTF-8 behind this declaration, said so in the header.
_PREPARED_TYPE = "application/xml; charset=utf-8"
_PREPARED_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
_FEEDPARSER_DECLARATION = b"<?xml version='1.0' encoding='utf-8'?>"


def _decoded(body: bytes, url: str, content_type: str) -> bytes:
    """The document as UTF-8, decoded exactly as feedparser would decode it."""
    if content_type == _PREPARED_TYPE and body.startswith(_PREPARED_DECLARATION):
        # feedparser reads this as UTF-8 (no byte order mark or other-family pattern
        # can start it) and writes it back unchanged but for the declaration's quotes,
        # which lxml reads the same: no copy. Bytes that are not UTF-8 it would read in
        # another encoding; here lxml refuses them (it accepts nothing but well-formed
        # UTF-8), so the fast path declines them.
        return body
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    result: dict[str, Any] = {}
    data = convert_to_utf8(headers, body, result)
    if not result.get("encoding"):
        raise Unsupported("unknown encoding")
    return bytes(data)


def _link_parts(element: etree._Element) -> tuple[str, str, str]:
    """(href, rel, type) of an Atom-style link, with feedparser's defaults."""
    attrs = _attrs(element)
    href = attrs.get("url", attrs.get("uri", attrs.get("href")))
    if not href:
        raise Unsupported("a link without href")
    rel = attrs.get("rel", "alternate")
    mime = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html")
    return href, rel, mime


def _channel_link(element: etree._Element, base: str, current: str) -> str:
    href, rel, mime = _link_parts(element)
    if rel == "alternate" and _map_type(mime) in HTML_TYPES:
        return _join(base, href)
    return current


_CHANNEL_IGNORED = frozenset(
    {
        "description",
        "language",
        "copyright",
        "managingeditor",
        "webmaster",
        "pubdate",
        "lastbuilddate",
        "category",
        "generator",
        "docs",
        "cloud",
        "image",
        "rating",
        "textinput",
        "skiphours",
        "skipdays",
    }
)


def _guessed_type(text: str) -> str:
    """The type feedparser gives RSS text: HTML when it looks like HTML."""
    return "text/html" if _looks_like_html(text) else "text/plain"


def _rss20(root: etree._Element, base: str, digests: Digests) -> RawFeed:
    if not root.get("version", "").startswith("2."):
        raise Unsupported("not RSS 2.x")
    channels = list(root)
    if len(channels) != 1 or _name(channels[0]) != ("", "channel"):
        raise Unsupported("not exactly one channel")
    channel = channels[0]
    if channel.attrib:
        raise Unsupported("channel attributes")
    title = link = ttl = ""
    title_type = "text/plain"
    seen: set[str] = set()
    items: list[dict[str, Any]] = []
    elements: list[etree._Element] = []
    sy: list[tuple[str, str]] = []
    for child in channel:
        namespace, local = _name(child)
        if namespace == "" and local == "item":
            if child.attrib:
                raise Unsupported("item attributes")
            elements.append(child)
            items.append(_rss_item(child, base, rdf=False))
            continue
        if namespace == "" and local in ("title", "link", "ttl"):
            if local in seen:
                raise Unsupported(f"repeated channel {local}")
            seen.add(local)
            if local == "title":
                text = _text(child)
                title, title_type = _finish(text), _guessed_type(text)
            elif local == "link":
                value = _text(child)
                link = _LINK_ENTITY.sub(r"&\g<1>", _finish(_join(base, value) if value else ""))
            else:
                ttl = _finish(_text(child))
        elif namespace == ATOM and local == "link":
            link = _channel_link(child, base, link)
        elif namespace == SY:
            sy.append((local, _finish(_text(child))))
        elif namespace == "" and local in _CHANNEL_IGNORED:
            continue
        else:
            raise Unsupported(f"channel element {{{namespace}}}{local}")
    entries = tuple(map(RawEntry, items, digests(elements)))
    return RawFeed("rss20", title, link, "", ttl, base, entries, tuple(sy), title_type)


def _rss10(root: etree._Element, base: str, digests: Digests) -> RawFeed:
    title = link = ""
    title_type = "text/plain"
    items: list[dict[str, Any]] = []
    elements: list[etree._Element] = []
    channels = 0
    sy: list[tuple[str, str]] = []
    for child in root:
        namespace, local = _name(child)
        if namespace == RSS10 and local == "item":
            elements.append(child)
            items.append(_rss_item(child, base, rdf=True))
        elif namespace == RSS10 and local == "channel":
            channels += 1
            for part in child:
                part_ns, part_local = _name(part)
                if part_ns == RSS10 and part_local == "title":
                    text = _text(part)
                    title, title_type = _finish(text), _guessed_type(text)
                elif part_ns == RSS10 and part_local == "link":
                    value = _text(part)
                    link = _finish(_join(base, value) if value else "")
                    link = _LINK_ENTITY.sub(r"&\g<1>", link)
                elif part_ns == SY:
                    sy.append((part_local, _finish(_text(part))))
                elif part_ns == RSS10 and part_local in ("description", "items", "image"):
                    continue
                else:
                    raise Unsupported(f"channel element {{{part_ns}}}{part_local}")
        elif namespace == RSS10 and local in ("image", "textinput"):
            continue
        else:
            raise Unsupported(f"RDF element {{{namespace}}}{local}")
    if channels != 1:
        raise Unsupported("not exactly one channel")
    entries = tuple(map(RawEntry, items, digests(elements)))
    return RawFeed("rss10", title, link, "", "", base, entries, tuple(sy), title_type)


def _atom(root: etree._Element, base: str, digests: Digests) -> RawFeed:
    title = link = feed_id = ""
    title_type = "text/plain"
    seen: set[str] = set()
    items: list[dict[str, Any]] = []
    elements: list[etree._Element] = []
    for child in root:
        namespace, local = _name(child)
        if namespace != ATOM:
            raise Unsupported(f"feed element {{{namespace}}}{local}")
        if local == "entry":
            elements.append(child)
            items.append(_atom_entry(child, base))
            continue
        if local in ("title", "id") and local in seen:
            raise Unsupported(f"repeated feed {local}")
        seen.add(local)
        if local == "title":
            title_type = _map_type(_attrs(child).get("type", "text"))
            if title_type not in ("text/plain", "text/html"):
                raise Unsupported("feed title type")
            title = _finish(_text(child))
        elif local == "id":
            value = _text(child)
            feed_id = _finish(_join(base, value) if value else "")
            if not link:
                link = feed_id
        elif local == "link":
            link = _channel_link(child, base, link)
        elif local in (
            "updated",
            "subtitle",
            "rights",
            "generator",
            "icon",
            "logo",
            "author",
            "category",
        ):
            continue
        else:
            raise Unsupported(f"feed element {local}")
    entries = tuple(map(RawEntry, items, digests(elements)))
    return RawFeed("atom10", title, link, feed_id, "", base, entries, (), title_type)


def read(body: bytes, *, url: str = "", content_type: str = "") -> RawFeed | None:
    """The raw entries of a well-formed feed, or None when feedparser must read it."""
    return _read_or_none(body, url, content_type, digested=True)


def read_undigested(body: bytes, *, url: str = "", content_type: str = "") -> RawFeed | None:
    """read() for a caller that normalises every entry anyway: the entries' digests
    (a tenth of the reading) are left out, as ""."""
    return _read_or_none(body, url, content_type, digested=False)


def _read_or_none(body: bytes, url: str, content_type: str, digested: bool) -> RawFeed | None:
    try:
        return _read(body, url, content_type, digested)
    except (Unsupported, etree.XMLSyntaxError, ValueError):
        return None


def _has_base(body: bytes) -> bool:
    """Whether an attribute named base or xml:base (any case) may be in the body."""
    lowered = body.lower()
    return any(
        m.start() and lowered[m.start() - 1] in _BEFORE_BASE for m in _BASE_ATTR.finditer(lowered)
    )


def _read(body: bytes, url: str, content_type: str, digested: bool) -> RawFeed:
    if _DOCTYPE.search(body[:4096]) or _has_base(body):
        raise Unsupported("DTD, entities or xml:base")
    data = _decoded(body, url, content_type)
    if _DOCTYPE.search(data[:4096]):
        raise Unsupported("DTD")
    root = etree.fromstring(data, _PARSER)
    base = url
    digests = functools.partial(_digests, data, base) if digested else _no_digests
    namespace, local = _name(root)
    declared = set(root.nsmap.values())
    if namespace == "" and local == "rss":
        if declared & {RSS10}:
            raise Unsupported("mixed namespaces")
        return _rss20(root, base, digests)
    if namespace == RDF and local == "rdf" and root.tag.endswith("}RDF"):
        if RSS10 not in declared or ATOM in declared:
            raise Unsupported("not plain RSS 1.0")
        return _rss10(root, base, digests)
    if namespace == ATOM and local == "feed":
        if RSS10 in declared:
            raise Unsupported("mixed namespaces")
        return _atom(root, base, digests)
    raise Unsupported("not RSS 2.0, RSS 1.0 or Atom 1.0")


# --- normalising -----------------------------------------------------------------------


def feedparser_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """The entry dictionary feedparser would have produced (the fields we read), told
    not to resolve relative URIs inside HTML (the sanitizer does, against the base)."""
    entry: dict[str, Any] = {
        k: v for k, v in raw.items() if k not in ("title", "summary", "content")
    }
    for key in ("title", "summary", "content"):
        if key not in raw:
            continue
        text, ctype, guess = raw[key]
        if guess and ctype == "text/plain" and _looks_like_html(text):
            ctype = "text/html"  # RSS text that looks like HTML counts as HTML
        value = _finish(text)
        if key == "content":
            entry["content"] = [{"type": ctype, "value": value}]
            entry.setdefault("summary", value)  # a copy: no summary_detail
        else:
            entry[key] = value
            entry[f"{key}_detail"] = {"type": ctype}
    for key in ("published", "updated"):
        if key in entry:
            entry[f"{key}_parsed"] = feedparser_date(entry[key])
    return entry


# (feedparser-style fields, base URL, time zone, seen at, raw digest, whether the feed
# is Atom) -> the entry
EntryBuilder = Callable[[dict[str, Any], str, str, datetime, str, bool], EntryRecord]


def normalise(
    raw: RawEntry, feed: RawFeed, timezone: str, seen_at: datetime, build: EntryBuilder
) -> EntryRecord:
    """One entry through the same normalisation as the feedparser path."""
    base = http_base(feed.base)
    atom = feed.version.startswith("atom")
    return build(feedparser_entry(raw.fields), base, timezone, seen_at, raw.digest, atom)


def parse_fast(
    data: bytes,
    *,
    url: str,
    content_type: str,
    timezone: str,
    seen_at: datetime,
    build: EntryBuilder,
    max_entries: int,
    known: Callable[[str], bool] | None = None,
) -> tuple[RawFeed, tuple[EntryRecord, ...]] | None:
    """The feed's raw fields and its first max_entries entries normalised, or None to
    let feedparser read the whole document. Entries whose raw digest is `known` (already
    stored, byte for byte) are left out before any of the expensive work."""
    raw = read(data, url=url, content_type=content_type)
    return normalise_all(raw, timezone, seen_at, build, max_entries, known)


def normalise_all(
    raw: RawFeed | None,
    timezone: str,
    seen_at: datetime,
    build: EntryBuilder,
    max_entries: int,
    known: Callable[[str], bool] | None = None,
) -> tuple[RawFeed, tuple[EntryRecord, ...]] | None:
    """parse_fast's second half: the first max_entries entries of a feed read normalised,
    or None (no feed, or markup only feedparser can mirror); entries whose digest is
    `known` are left out."""
    if raw is None:
        return None
    wanted = raw.entries[:max_entries]
    if known is not None:
        wanted = tuple(e for e in wanted if not known(e.digest))
    try:
        entries = tuple(normalise(e, raw, timezone, seen_at, build) for e in wanted)
    except Unsupported:  # markup the fast path cannot mirror: feedparser reads it all
        return None
    return raw, entries
