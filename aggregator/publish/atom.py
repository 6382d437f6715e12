"""Atom 1.0 (RFC 4287) versions of the published feeds, written by feedgen.

Every entry carries atom:source and its enclosures (feedgen extensions below add
what feedgen 1.0 cannot write); archive pages are marked with fh:archive and
linked both ways (RFC 5005). Deterministic bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import PROJECT_URL, __version__
from aggregator.config.loader import Config
from aggregator.parse.xmlchars import strip_control
from aggregator.publish.documents import (
    EPOCH,
    HISTORY_NS,
    Document,
    EntryView,
    OutputFormat,
    SourceView,
    feed_id,
    shown_name,
    xml_content,
)

MEDIA_TYPE = "application/atom+xml"


class _FeedExtension(BaseExtension):  # type: ignore[misc]
    """Marks archive documents with fh:archive (RFC 5005)."""

    def __init__(self) -> None:
        self.archive = False

    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY_NS}

    def extend_atom(self, feed: Any) -> Any:
        # feedgen calls this before it appends the entries: metadata stays first.
        if self.archive:
            etree.SubElement(feed, f"{{{HISTORY_NS}}}archive")
        return feed


class _EntryExtension(BaseEntryExtension):  # type: ignore[misc]
    """Writes atom:source and enclosure links (feedgen drops their attributes)."""

    def __init__(self) -> None:
        self.source: SourceView | None = None
        self.source_updated: datetime = EPOCH
        self.enclosures: tuple[tuple[str, str, int], ...] = ()

    def extend_atom(self, entry: Any) -> Any:
        # feedgen writes un-namespaced elements under a root carrying xmlns, so
        # ours must be un-namespaced too to land in the Atom namespace.
        for url, mime, length in self.enclosures:
            link = etree.SubElement(entry, "link", rel="enclosure", href=url)
            link.set("type", mime or "application/octet-stream")
            link.set("length", str(max(length, 0)))
        source = self.source
        if source:
            element = etree.SubElement(entry, "source")
            etree.SubElement(element, "id").text = source.id
            etree.SubElement(element, "title").text = source.title
            etree.SubElement(element, "updated").text = self.source_updated.isoformat()
            if source.link:
                etree.SubElement(
                    element, "link", rel="alternate", type="text/html", href=source.link
                )
            if source.feed_url:
                etree.SubElement(element, "link", rel="self", href=source.feed_url)
            if source.author:
                etree.SubElement(etree.SubElement(element, "author"), "name").text = source.author
        return entry


def _generator() -> FeedGenerator:
    generator = FeedGenerator()
    generator.register_extension("agg", _FeedExtension, _EntryExtension, atom=True, rss=False)
    return generator


def render_atom(doc: Document, config: Config) -> bytes:
    return bytes(feed_generator(doc, config).atom_str(pretty=True, encoding="UTF-8"))


def feed_generator(doc: Document, config: Config) -> FeedGenerator:
    """The document as feedgen holds it, head and entries, before it is written."""
    generator = _generator()
    _set_head(generator, doc, config)
    for view in doc.entries:
        _add_entry(generator, view)
    return generator


_FEED_END = b"</feed>\n"
_ENTRY_START = b"\n  <entry>\n"
_ENTRY_END = b"  </entry>\n"


def assemble_atom(doc: Document, config: Config, entries: Sequence[bytes]) -> bytes:
    """The bytes render_atom gives, from the document without entries and the
    entry_fragments of its entries (feedgen appends entries after the metadata)."""
    generator = _generator()
    _set_head(generator, doc, config)
    head = bytes(generator.atom_str(pretty=True, encoding="UTF-8"))
    return b"".join((head.removesuffix(_FEED_END), *entries, _FEED_END))


def entry_fragments(views: Sequence[EntryView]) -> list[bytes]:
    """Each entry's <entry> element as render_atom writes it inside a document:
    rendered by feedgen in one throwaway document and cut out of it."""
    if not views:
        return []
    generator = _generator()
    generator.id("urn:uuid:00000000-0000-0000-0000-000000000000")
    generator.title("-")
    generator.updated(EPOCH)
    for view in views:
        _add_entry(generator, view)
    data = bytes(generator.atom_str(pretty=True, encoding="UTF-8"))
    # Text and attributes are escaped, so "<entry>" and "</entry>" here are only tags.
    body = data[data.index(_ENTRY_START) + 1 : data.rindex(_FEED_END)]
    parts = [part + _ENTRY_END for part in body.split(_ENTRY_END)[:-1]]
    assert len(parts) == len(views)
    return parts


def _set_head(generator: FeedGenerator, doc: Document, config: Config) -> None:
    settings = config.settings
    generator.agg.archive = bool(doc.archive_number)
    generator.id(feed_id(doc.info.key))
    generator.title(shown_name(doc.info.title))
    generator.subtitle(strip_control(doc.subtitle))
    generator.language(settings.language)
    generator.author({"name": strip_control(settings.author)})
    generator.link(href=doc.self_url, rel="self", type=MEDIA_TYPE)
    generator.link(href=settings.base_url + "/", rel="alternate", type="text/html")
    for alternate in doc.alternates:
        generator.link(href=alternate.url, rel="alternate", type=alternate.media_type)
    if doc.hub:
        generator.link(href=doc.hub, rel="hub")
    if doc.archive_number:
        generator.link(href=doc.current_url, rel="current", type=MEDIA_TYPE)
    if doc.prev_archive:
        generator.link(href=doc.prev_archive, rel="prev-archive", type=MEDIA_TYPE)
    if doc.next_archive:
        generator.link(href=doc.next_archive, rel="next-archive", type=MEDIA_TYPE)
    generator.generator("aggregator", __version__, PROJECT_URL)
    generator.updated(doc.updated)


def _add_entry(generator: FeedGenerator, view: EntryView) -> None:
    entry = generator.add_entry(order="append")
    entry.id(view.id)
    entry.title(view.title)
    if view.link:
        entry.link(href=view.link, rel="alternate", type="text/html")
    entry.published(view.published)
    entry.updated(view.updated)
    if view.author:
        entry.author({"name": view.author})
    if view.summary:
        entry.summary(view.summary, type="html")
    entry.content(view.content, type="html")
    for category in view.categories:
        entry.category(term=category.term, label=category.label, scheme=category.scheme)
    entry.agg.enclosures = view.enclosures
    entry.agg.source = view.source
    entry.agg.source_updated = view.updated


ATOM = OutputFormat(
    name="atom",
    label="Atom",
    suffix=".xml",
    media_type=MEDIA_TYPE,
    render=render_atom,
    fragments=entry_fragments,
    assemble=assemble_atom,
    write_content=xml_content,
    version="3",
)
