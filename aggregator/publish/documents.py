"""What a published document shows, prepared once for every output format. Plain data.

The publisher turns stored articles into EntryViews and lays out each page of a
feed as a Document; an output format (aggregator.publish.formats) turns a Document
into bytes. Ids live here too: an entry's id is the same in every format.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.config.loader import Config
from aggregator.parse.sanitize import display_safe
from aggregator.parse.xmlchars import strip_control
from aggregator.store.records import FeedKey

# Fixed namespace for uuid5 ids: an entry's id depends on its share code only.
ID_NAMESPACE = uuid.UUID("6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HISTORY_NS = "http://purl.org/syndication/history/1.0"
MAX_TITLE = 1000  # the parser caps titles too; this guards rows written by other means


def xml_content(content: str) -> bytes:
    """HTML content as the XML formats write it in an element's text (no controls:
    a content holding one is not found in its fragment, see publish.shells)."""
    text = content.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.encode("utf-8", "replace")


def entry_id(code: str) -> str:
    """The id of an article: stable forever, the same in every feed and format."""
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'entry:' + code)}"


def feed_id(key: FeedKey) -> str:
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'feed:' + key[0] + ':' + key[1])}"


def shown_name(text: str) -> str:
    """A title or name as shown: stored ones are clean already, but rows written by
    other means or before the display hazards were removed may not be."""
    text = display_safe(strip_control(text)).strip()
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1].rstrip() + "…"


@dataclass(frozen=True)
class FeedInfo:
    """Where a feed lives and what it is called."""

    key: FeedKey
    stem: str  # relative to the output folder, without suffix, e.g. "tag/sanqin-dushibao-xinwen"
    title: str
    subtitle: str

    def file(self, suffix: str) -> str:
        """The current document in the format with this suffix, e.g. "all.xml"."""
        return self.stem + suffix

    @property
    def archive_folder(self) -> str:
        return f"archive/{self.stem}"

    def archive_file(self, number: int, suffix: str) -> str:
        return f"{self.archive_folder}/{number}{suffix}"


@dataclass(frozen=True)
class SourceView:
    """The feed an entry was first taken from (atom:source)."""

    id: str
    title: str
    link: str  # its web page, or ""
    feed_url: str  # where it is fetched from (http(s) only), or ""
    author: str  # who the entries are by when they name nobody


@dataclass(frozen=True)
class Category:
    term: str
    label: str
    scheme: str


@dataclass(frozen=True)
class EntryView:
    id: str
    title: str
    link: str
    published: datetime
    updated: datetime  # as shown: unique within its document (feedpages.shown_updated)
    author: str
    summary: str  # sanitized HTML or ""
    content: str  # sanitized HTML, never empty
    categories: tuple[Category, ...]
    enclosures: tuple[tuple[str, str, int], ...]
    source: SourceView | None


@dataclass(frozen=True)
class Link:
    """Another document a document points to: its URL and media type."""

    url: str
    media_type: str


@dataclass(frozen=True)
class Document:
    """One feed document: the current one or an archive page, in one format."""

    info: FeedInfo
    entries: tuple[EntryView, ...]
    self_url: str
    current_url: str  # the subscription document in the same format
    alternates: tuple[Link, ...] = ()  # the same page in other formats
    prev_archive: str = ""
    next_archive: str = ""
    archive_number: int = 0  # 0 for the current document
    hub: str = ""
    updated_at: datetime | None = None  # when entries are given as cached fragments

    @property
    def updated(self) -> datetime:
        if self.updated_at is not None:
            return self.updated_at
        return max((e.updated for e in self.entries), default=EPOCH)

    @property
    def subtitle(self) -> str:
        if self.archive_number:
            return f"{self.info.subtitle} (archive {self.archive_number})"
        return self.info.subtitle


@dataclass(frozen=True)
class OutputFormat:
    """One output format, as registered in aggregator.publish.formats.

    A document is assembled from a head (everything but the entries) and one cached
    fragment per entry: assemble(doc, config, fragments(views)) gives the bytes
    render(doc, config) gives for a document holding those views.
    """

    name: str  # the `formats` setting's word for it, and its render cache key
    label: str  # what people call it: "Atom", "RSS 2.0"
    suffix: str  # of its files: ".xml"
    media_type: str  # served as, and announced as, e.g. "application/atom+xml"
    render: Callable[[Document, Config], bytes]
    fragments: Callable[[Sequence[EntryView]], list[bytes]]
    assemble: Callable[[Document, Config, Sequence[bytes]], bytes]
    # An entry's HTML content as its fragments hold it (aggregator.publish.shells).
    write_content: Callable[[str], bytes]
    # Bump when what an entry looks like in this format changes: cached fragments go stale.
    version: str
    # Whether documents in other formats link to this one as rel="alternate".
    announced: bool = True

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8"
