"""Source kinds, and the one front door to parsing: ``parse_feed``.

A kind is how to ask a source for its entries (the Accept header its requests send;
the method, headers, query parameters and body come from the source's config) and how
to turn the bytes it answers with into entries (a reader). Each reader decides what
it reads in this process and what it hands to the sandbox (sandbox.py: a child
process under a time and a memory limit):

- ``feed``: RSS, Atom, RDF and JSON Feed, told apart by the bytes. Well-formed XML
  without a DTD goes through lxml here (the fast path, whatever its size); JSON Feed
  here too (no entities, no recursion); the rest through feedparser, here when small
  and without a DTD, else in the sandbox.
- ``html``: a list page read with selectors (htmlpage.py); ``json``: an API's answer
  read with JMESPath paths (jsonapi.py). Here up to parse_inline_max_bytes, else in
  the sandbox.

config.loader.SOURCE_KINDS names the kinds a config may use; KINDS has a reader for
each (a test holds the two to agreement).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aggregator.config.loader import Source
from aggregator.config.selectors import Selectors
from aggregator.models import ParsedFeed
from aggregator.parse.limits import ParseLimits

# The readers are imported by the first document they read: a poll whose sources all
# answer 304 (or the same bytes) loads none of them, nor lxml, nh3 or feedparser.
if TYPE_CHECKING:
    from aggregator.parse.feed import ScreenedXml

Known = Callable[[str], bool]


@dataclass(frozen=True)
class Document:
    """A fetched document and what its reader needs to know about it."""

    body: bytes
    url: str
    content_type: str
    timezone: str
    seen_at: datetime
    limits: ParseLimits
    selectors: Selectors


Reader = Callable[[Document, Known | None], ParsedFeed]


@dataclass(frozen=True)
class SourceKind:
    name: str
    # The Accept header of its requests ("": the fetcher's, for feeds); a source's own
    # headers may replace it.
    accept: str
    read: Reader


def read_feed(document: Document, known: Known | None) -> ParsedFeed:
    """An RSS, Atom, RDF or JSON Feed document. `known` tells raw entry digests already
    stored (fast path only: see parse.fast)."""
    from aggregator.parse.feed import parse_fast, parse_prepared, prepare, prepare_unread
    from aggregator.parse.jsonfeed import looks_like_json, parse_json_feed

    body, limits = document.body, document.limits
    if looks_like_json(body, document.content_type):
        return parse_json_feed(
            body,
            url=document.url,
            timezone=document.timezone,
            seen_at=document.seen_at,
            limits=limits.fields,
        )

    def fast(ready: ScreenedXml) -> ParsedFeed | None:
        return parse_fast(
            ready,
            url=document.url,
            timezone=document.timezone,
            seen_at=document.seen_at,
            limits=limits.fields,
            known=known,
        )

    # Most bodies are UTF-8 as sent, and lxml's strict reading spares decoding them first.
    unread = prepare_unread(body, document.content_type)
    quick = fast(unread) if unread is not None else None
    if quick is not None:
        return quick
    prepared = prepare(body, document.content_type)
    # Unless lxml refused the unread bytes (before reading any entry, so `known` was
    # not asked), they were these bytes, and would be declined again.
    quick = fast(prepared) if prepared != unread else None
    if quick is not None:
        return quick
    arguments = {
        "prepared": prepared,
        "url": document.url,
        "timezone": document.timezone,
        "seen_at": document.seen_at,
        "limits": limits.fields,
        "fast": False,  # the fast path declined already
    }
    if needs_worker(prepared, limits):
        from aggregator.parse.sandbox import parsed_in_worker

        return parsed_in_worker(parse_prepared, arguments, limits)
    return parse_prepared(
        prepared,
        url=document.url,
        timezone=document.timezone,
        seen_at=document.seen_at,
        limits=limits.fields,
        fast=False,
    )


def needs_worker(prepared: ScreenedXml, limits: ParseLimits) -> bool:
    return prepared.has_dtd or len(prepared.data) > limits.inline_max_bytes


def _parse_html_page(**arguments: Any) -> ParsedFeed:
    """htmlpage.parse_html_page, loaded by the first page read."""
    from aggregator.parse.htmlpage import parse_html_page as parse

    return parse(**arguments)


def _parse_json_api(**arguments: Any) -> ParsedFeed:
    """jsonapi.parse_json_api, loaded by the first answer read."""
    from aggregator.parse.jsonapi import parse_json_api as parse

    return parse(**arguments)


def _selected(parse: Callable[..., ParsedFeed]) -> Reader:
    """A reader for a kind read with selectors: here when small, else in the sandbox
    (where `known` cannot go: every item is read)."""

    def read(document: Document, known: Known | None) -> ParsedFeed:
        arguments = {
            "body": document.body,
            "url": document.url,
            "content_type": document.content_type,
            "selectors": document.selectors,
            "timezone": document.timezone,
            "seen_at": document.seen_at,
            "limits": document.limits.fields,
        }
        if len(document.body) <= document.limits.inline_max_bytes:
            return parse(**arguments, known=known)
        from aggregator.parse.sandbox import parsed_in_worker

        return parsed_in_worker(parse, arguments, document.limits)

    return read


KINDS: dict[str, SourceKind] = {
    kind.name: kind
    for kind in (
        SourceKind("feed", "", read_feed),
        SourceKind(
            "html", "text/html, application/xhtml+xml;q=0.9, */*;q=0.5", _selected(_parse_html_page)
        ),
        SourceKind("json", "application/json, */*;q=0.5", _selected(_parse_json_api)),
    )
}


# The modules each kind's reader loads on first use (see load_readers).
READER_MODULES = {
    "feed": ("aggregator.parse.feed", "aggregator.parse.jsonfeed"),
    "html": ("aggregator.parse.htmlpage",),
    "json": ("aggregator.parse.jsonapi",),
}


def load_readers(kinds: Iterable[str]) -> None:
    """Load the readers of these kinds now: before forking processes that will all
    parse, so that they share one copy instead of each loading its own."""
    for kind in sorted(set(kinds)):
        for module in READER_MODULES[kind]:
            importlib.import_module(module)


def parse_feed(
    body: bytes,
    *,
    kind: str = "feed",
    selectors: Selectors | None = None,
    url: str = "",
    content_type: str = "",
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: ParseLimits | None = None,
    known: Known | None = None,
) -> ParsedFeed:
    """Read what a source of `kind` answered into entries, within the limits. Raises
    ParseError when it cannot be read (not a feed; a selector that matches nothing; a
    parse over its time or memory limit)."""
    document = Document(
        body,
        url,
        content_type,
        timezone,
        seen_at,
        limits or ParseLimits(),
        selectors or Selectors(),
    )
    return KINDS[kind].read(document, known)


def parse_source(
    source: Source,
    body: bytes,
    *,
    url: str,
    content_type: str,
    seen_at: datetime,
    limits: ParseLimits | None = None,
    known: Known | None = None,
) -> ParsedFeed:
    """parse_feed for a configured source: its kind, selectors and time zone."""
    return parse_feed(
        body,
        kind=source.kind,
        selectors=source.select,
        url=url,
        content_type=content_type,
        timezone=source.timezone,
        seen_at=seen_at,
        limits=limits,
        known=known,
    )


def request_url(source: Source) -> str:
    """The source's URL with its query parameters."""
    url = source.url
    if not source.params:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(source.params)) if q)
    return urlunsplit(parts._replace(query=query))


def request_headers(source: Source) -> tuple[tuple[str, str], ...]:
    """The kind's Accept header unless the source gives its own, then the source's."""
    kind_accept = KINDS[source.kind].accept
    if not kind_accept or any(name.lower() == "accept" for name, _ in source.headers):
        return source.headers
    return (("Accept", kind_accept), *source.headers)


def request_body(source: Source) -> bytes | None:
    """A POST's body (possibly empty); None for a GET."""
    return source.body.encode("utf-8") if source.method == "POST" else None


def picked_values(
    source: Source, body: bytes, *, url: str, content_type: str
) -> list[dict[str, str]]:
    """What an html or json source's selectors or paths pick from each item, as written
    on the page or in the answer (before dates are read or links resolved): for
    `sources check` and `config check --fetch`. Raises ParseError as parse_feed does."""
    from aggregator.parse import htmlpage, jsonapi

    if source.kind == "html":
        page = htmlpage.read_page(body, url, content_type)
        return [dict(v) for v in htmlpage.picked_items(page, source.select)]
    if source.kind == "json":
        answer = jsonapi.read_answer(body, content_type)
        return [dict(v) for v in jsonapi.picked_items(answer, source.select)]
    return []


def unmatched_fields(source: Source, picked: list[dict[str, str]]) -> list[str]:
    """The fields the source selects (or, for a page, the default title and link) that
    no item has a value for: a selector that matches nothing, a path that is not there."""
    if source.kind == "feed" or not picked:
        return []
    given = source.select.given()
    if source.kind == "html":
        from aggregator.parse.htmlpage import DEFAULT_SELECTORS

        given = {**DEFAULT_SELECTORS, **given}
    return [name for name in given if name != "items" and not any(name in v for v in picked)]
