"""Turn RSS, Atom and RDF bytes into normalised entries.

Two steps. ``prepare`` decodes the bytes by our own charset precedence
(encoding.py), removes XML-illegal characters, screens the DOCTYPE against
entity attacks (xmlguard.py) and refuses what is plainly not a whole feed (an
HTML page, a document cut off before its root closes). The result is UTF-8
with a matching declaration, so feedparser's own charset guessing never
runs. ``parse_prepared`` then runs feedparser on those bytes and makes what
it returns safe: sanitized HTML, plain-text titles, absolute http(s) URLs,
sane dates, fields cut to their limits.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import feedparser

from aggregator.errors import ParseError
from aggregator.models import Enclosure, EntryRecord, ParsedFeed
from aggregator.parse import fast as fastparse
from aggregator.parse.dates import entry_date, sane
from aggregator.parse.encoding import Decoded, bom_encoding, candidates, decode
from aggregator.parse.limits import MAX_GUID, MAX_NAME, FieldLimits
from aggregator.parse.sanitize import (
    absolute_http_url,
    clean_html,
    has_markup,
    http_base,
    plain_text,
)
from aggregator.parse.xmlchars import strip_control
from aggregator.parse.xmlguard import is_complete, screen

MAX_RAW_DATE = 200

_XML_DECLARATION = re.compile(r"\s*<\?xml(?:\s[^>]*)?\?>")
_SKIP_HOURS = re.compile(rb"<skipHours\b[^>]*>(.*?)</skipHours\s*>", re.S)
_SKIP_DAYS = re.compile(rb"<skipDays\b[^>]*>(.*?)</skipDays\s*>", re.S)
_HOUR = re.compile(rb"<hour\b[^>]*>\s*(\d{1,2})\s*</hour\s*>")
_DAY = re.compile(rb"<day\b[^>]*>\s*([A-Za-z]+)\s*</day\s*>")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UPDATE_PERIODS = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 7 * 86400.0,
    "monthly": 30 * 86400.0,
    "yearly": 365 * 86400.0,
}


@dataclass(frozen=True)
class ScreenedXml:
    """A document made safe to hand to an XML parser."""

    data: bytes  # UTF-8, with an XML declaration saying so
    encoding: str  # the encoding the original bytes were read in
    root: str
    has_dtd: bool  # a (screened) internal DTD with entities is left in


def prepare(body: bytes, content_type: str = "") -> ScreenedXml:
    """Decode, clean and screen a document. Raises ParseError when it is not
    a whole feed or when its DTD is hostile."""
    if not body.strip():
        raise ParseError("the body is empty")
    decoded = decode(body, content_type)
    as_sent = _utf8_as_sent(body, decoded)
    text = (decoded.text if as_sent else strip_control(decoded.text)).lstrip("\ufeff")
    if not text.strip():
        raise ParseError("the body is empty")
    declaration = _XML_DECLARATION.match(text)
    if declaration:
        text = text[declaration.end() :]
    screened = screen(text)
    root = screened.root
    if root is None:
        raise ParseError("not a feed: the body does not start with an XML element")
    if root.lower() == "html":
        raise ParseError("not a feed: an HTML page")
    if not is_complete(screened.text, root):
        raise ParseError(f"truncated document: the closing </{root}> is missing")
    if as_sent and screened.text is text:
        # The text is a tail of the body read as it was sent: that tail's bytes are
        # what encoding it again would give, and copying them costs far less.
        dropped = decoded.text[: len(decoded.text) - len(text)]
        data = _DECLARATION + body[len(dropped.encode("utf-8")) :]
    else:
        data = _DECLARATION + screened.text.encode("utf-8")
    return ScreenedXml(data, decoded.encoding, root, screened.has_dtd)


_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
# How much of a body prepare_unread decodes: a prolog longer than this is read in full.
_HEAD = 8192


def prepare_unread(body: bytes, content_type: str = "") -> ScreenedXml | None:
    """prepare()'s answer for the usual body, without decoding and scanning all of it,
    or None when the body is not of that kind: one that prepare would read as UTF-8
    from its first byte (no byte order mark, UTF-8 the first encoding to try), with no
    DOCTYPE. Only the head is decoded, to screen the prolog; the rest is handed on as
    it came.

    So this is prepare()'s answer only once a strict XML parser has read the data.
    lxml refuses everything that would make prepare's differ: bytes that are not
    UTF-8 (another encoding would be tried), controls and U+FFFE/U+FFFF (they would be
    removed), a document cut off (it would be refused). A caller that meets such a
    refusal prepares the body in full."""
    if bom_encoding(body)[0] or candidates(body, content_type)[0][0] != "utf-8":
        return None
    try:  # strict, but a character cut at the head's end is held back, not refused
        head = codecs.getincrementaldecoder("utf-8")().decode(body[:_HEAD])
    except UnicodeDecodeError:
        return None
    declaration = _XML_DECLARATION.match(head)
    start = declaration.end() if declaration else 0
    prolog = head[start:]
    try:
        screened = screen(prolog)
    except ParseError:  # a refused DTD, or a prolog running past the head
        return None
    root = screened.root
    if (
        screened.text != prolog  # a DOCTYPE, rewritten: prepare's own work
        or root is None
        or root.lower() == "html"
        or head.endswith(root)  # the name may go on past the head
    ):
        return None
    return ScreenedXml(_DECLARATION + body[len(head[:start].encode()) :], "utf-8", root, False)


# The C0 controls XML 1.0 forbids, as bytes (the same in UTF-8 as in ASCII).
_C0_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])


def _utf8_as_sent(body: bytes, decoded: Decoded) -> bool:
    """Whether the text is the body read as UTF-8 from its first byte, with nothing
    strip_control would remove: then the body's own bytes can be reused. Strict UTF-8
    decoding leaves no surrogates; the controls and U+FFFE/U+FFFF are looked for."""
    return (
        decoded.encoding == "utf-8"
        and decoded.chosen_by not in ("bom", "repaired")
        and len(body.translate(None, _C0_BYTES)) == len(body)
        and "\ufffe" not in decoded.text
        and "\uffff" not in decoded.text
    )


def _content_part(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The content element to keep: the first HTML one, else the first."""
    contents = entry.get("content") or []
    html_parts = [c for c in contents if "html" in (c.get("type") or "")]
    chosen = html_parts or contents
    return chosen[0] if chosen else {}


def _base_of(detail: Any, base: str) -> str:
    """The base URI in force where a field was read (feedparser's detail carries its
    xml:base), when that is http(s); else the document's."""
    found = detail.get("base") if isinstance(detail, Mapping) else None
    return (http_base(found) if isinstance(found, str) else "") or base


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
                url,
                plain_text(enclosure.get("type") or "", MAX_NAME),
                int(length) if length.isdigit() and len(length) < 19 else 0,
            ),
        )
    return tuple(found.values())


def _is_text(detail: Any) -> bool:
    """Whether feedparser says a field is plain text: Atom's type="text" (its default),
    or RSS text that does not look like HTML."""
    # (dict: feedparser's details are dicts, and Mapping's check costs ten times more)
    return isinstance(detail, dict) and detail.get("type") == "text/plain"


def _html_field(value: str, detail: Any, limit: int, base: str) -> str:
    """A summary or content value sanitized: plain text escaped first, so its "<" and
    "&" are shown as written; relative URLs resolved against the base in force where
    the field was (the fast path declines documents with xml:base)."""
    markup = html.escape(value, quote=False) if _is_text(detail) else value
    return clean_html(markup, limit, _base_of(detail, base))


def entry_from_fields(
    raw: dict[str, Any],
    base: str,
    tz: str,
    seen_at: datetime,
    limits: FieldLimits,
    raw_digest: str = "",
    *,
    atom: bool = False,
) -> EntryRecord:
    """One entry from feedparser-style fields. A title is markup when its type says so
    (see title_is_markup), else plain text whose "<" is shown: an RSS title
    "&lt;独家&gt;报道" is "<独家>报道"."""
    link = absolute_http_url(raw.get("link") or "", base)
    part = _content_part(raw)
    content = str(part.get("value") or "")
    summary = str(raw.get("summary") or "")
    summary_detail = raw.get("summary_detail")
    # RSS often has only <description>: then it is the content, not a summary.
    body, body_detail = (content, part) if content else (summary, summary_detail)
    # dict.get: FeedParserDict.get would map a missing `updated` to `published`.
    published_raw = _raw_date(dict.get(raw, "published"))
    updated_raw = _raw_date(dict.get(raw, "updated"))
    published = entry_date(published_raw, dict.get(raw, "published_parsed"), tz)
    updated = entry_date(updated_raw, dict.get(raw, "updated_parsed"), tz)
    author = raw.get("author") or (raw.get("author_detail") or {}).get("name") or ""
    terms = (t.get("term") or t.get("label") or "" for t in raw.get("tags") or [])
    title = str(raw.get("title") or "")
    return EntryRecord(
        guid=strip_control(str(raw.get("id") or "")).strip()[:MAX_GUID],
        title=plain_text(
            title, limits.title, markup=title_is_markup(title, raw.get("title_detail"), atom)
        ),
        link=link,
        published=sane(published, seen_at),
        updated=sane(updated, seen_at),
        author=plain_text(str(author), MAX_NAME),
        summary=(
            _html_field(summary, summary_detail, limits.summary, base)
            if content and summary != content
            else ""
        ),
        content=_html_field(body, body_detail, limits.content, base),
        categories=tuple(
            dict.fromkeys(c for c in (plain_text(str(t), MAX_NAME) for t in terms) if c)
        ),
        enclosures=_enclosures(raw, base),
        published_raw=published_raw,
        updated_raw=updated_raw,
        raw_digest=raw_digest,
    )


def title_is_markup(title: str, detail: Any, atom: bool) -> bool:
    """Whether a title's tags are markup to drop. Atom declares a title's type; in RSS,
    feedparser guesses (HTML if it finds a closing tag or an entity and no element it
    distrusts), and a title it takes for text is markup still when it holds a real
    HTML tag ("<br>", "<script>"): "<独家>" and "a<b 且 b>c" are text."""
    if not _is_text(detail):
        return True
    return not atom and "<" in title and has_markup(title)


def _raw_date(value: Any) -> str:
    if not value:
        return ""
    text = str(value)
    return (text if text.isprintable() else strip_control(text)).strip()[:MAX_RAW_DATE]


def _skips(data: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """RSS <skipHours> and <skipDays>. One bytes search for what both start with
    first: many times faster than the patterns over a document without either, and
    a document is mostly without (each search reads the whole document)."""
    if b"<skip" not in data:
        return (), ()
    return _skip_hours(data), _skip_days(data)


def _skip_hours(data: bytes) -> tuple[int, ...]:
    match = _SKIP_HOURS.search(data) if b"<skipHours" in data else None
    if not match:
        return ()
    hours = {int(h) % 24 for h in _HOUR.findall(match.group(1)) if int(h) <= 24}
    return tuple(sorted(hours))


def _skip_days(data: bytes) -> tuple[int, ...]:
    match = _SKIP_DAYS.search(data) if b"<skipDays" in data else None
    if not match:
        return ()
    names = (d.decode("ascii").lower() for d in _DAY.findall(match.group(1)))
    return tuple(sorted({DAYS.index(n) for n in names if n in DAYS}))


def _update_period(feed: Mapping[str, Any]) -> float | None:
    """sy:updatePeriod / sy:updateFrequency as seconds between updates."""
    period = UPDATE_PERIODS.get(str(feed.get("sy_updateperiod") or "").strip().lower())
    if period is None:
        return None
    frequency = str(feed.get("sy_updatefrequency") or "1").strip()
    times = int(frequency) if frequency.isdigit() and 0 < int(frequency) < 100_000 else 1
    return period / times


def parse_prepared(
    prepared: ScreenedXml,
    *,
    url: str = "",
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: FieldLimits | None = None,
    fast: bool = True,
) -> ParsedFeed:
    """Read a prepared document and normalise what it finds: through lxml (the fast
    path) when it is well-formed RSS/Atom without a DTD, else through feedparser."""
    limits = limits or FieldLimits()
    if fast and not prepared.has_dtd:
        quick = parse_fast(prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits)
        if quick is not None:
            return quick
    headers = {"content-location": url, "content-type": "application/xml; charset=utf-8"}
    parsed = feedparser.parse(
        prepared.data, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    if not parsed.get("version"):
        # feedparser's bozo flag alone does not tell an HTML page from a feed.
        reason = parsed.get("bozo_exception")
        raise ParseError(f"not a feed{': ' + str(reason) if reason else ''}")
    feed = parsed.get("feed", {})
    base = http_base(url)
    link = absolute_http_url(feed.get("link") or "", base)
    ttl = str(feed.get("ttl") or "").strip()
    raw_entries = parsed.get("entries", [])[: limits.entries]
    atom = str(parsed.get("version")).startswith("atom")
    entries = tuple(
        entry_from_fields(e, base, timezone, seen_at, limits, atom=atom) for e in raw_entries
    )
    title, detail = str(feed.get("title") or ""), feed.get("title_detail")
    skip_hours, skip_days = _skips(prepared.data)
    return ParsedFeed(
        version=str(parsed.get("version")),
        title=plain_text(title, limits.title, markup=title_is_markup(title, detail, atom)),
        link=link,
        feed_id=strip_control(str(feed.get("id") or link or url)).strip()[:MAX_GUID],
        entries=entries,
        ttl_minutes=int(ttl) if ttl.isdigit() and len(ttl) < 9 else None,
        skip_hours=skip_hours,
        skip_days=skip_days,
        update_period=_update_period(feed),
    )


def parse_fast(
    prepared: ScreenedXml,
    *,
    url: str,
    timezone: str,
    seen_at: datetime,
    limits: FieldLimits,
    known: Callable[[str], bool] | None = None,
) -> ParsedFeed | None:
    """The fast path alone: None when it declines the document (feedparser must read it).

    It reads prepared.data, whose encoding prepare() has already decided, so both
    paths see the same text. lxml is set up not to resolve entities, not to touch
    the network and to keep its size limits, so any size may be read in-process.
    """
    if prepared.has_dtd:
        return None

    def build(
        raw: dict[str, Any], base: str, tz: str, seen: datetime, digest: str, atom: bool
    ) -> EntryRecord:
        return entry_from_fields(raw, base, tz, seen, limits, digest, atom=atom)

    found = fastparse.parse_fast(
        prepared.data,
        url=url,
        content_type="application/xml; charset=utf-8",
        timezone=timezone,
        seen_at=seen_at,
        build=build,
        max_entries=limits.entries,
        known=known,
    )
    if found is None:
        return None
    raw, entries = found
    base = http_base(url)
    detail, atom = {"type": raw.title_type}, raw.version.startswith("atom")
    link = absolute_http_url(raw.link, base)
    ttl = raw.ttl.strip()
    syndication = {f"sy_{k.lower()}": v for k, v in raw.syndication}
    skip_hours, skip_days = _skips(prepared.data)
    return ParsedFeed(
        version=raw.version,
        title=plain_text(raw.title, limits.title, markup=title_is_markup(raw.title, detail, atom)),
        link=link,
        feed_id=strip_control(raw.feed_id or link or url).strip()[:MAX_GUID],
        entries=entries,
        ttl_minutes=int(ttl) if ttl.isdigit() and len(ttl) < 9 else None,
        skip_hours=skip_hours,
        skip_days=skip_days,
        update_period=_update_period(syndication),
        skipped=min(len(raw.entries), limits.entries) - len(entries),
    )


def parse_xml(
    body: bytes,
    *,
    url: str = "",
    content_type: str = "",
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: FieldLimits | None = None,
    fast: bool = True,
) -> ParsedFeed:
    """Parse one RSS, Atom or RDF document in this process, without the sandbox's
    limits (the poll reads feeds through kinds.parse_feed). Raises ParseError when it
    is not a feed."""
    return parse_prepared(
        prepare(body, content_type),
        url=url,
        timezone=timezone,
        seen_at=seen_at,
        limits=limits,
        fast=fast,
    )
