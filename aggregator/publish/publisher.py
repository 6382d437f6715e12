"""Republish the store as feeds under the output folder.

One feed per category, per tag, per source, and one of everything, each as
Atom 1.0 (feedgen) and JSON Feed 1.1: ``all.xml``/``all.json``,
``category/<slug>.xml``, ``tag/<slug>.xml``, ``source/<id>.xml``. Older
entries live in RFC 5005 archive pages ``archive/<feed>/<n>.xml`` that never
change once written (see aggregator.publish.feedpages). Plus ``index.html`` with
autodiscovery links and ``feeds.opml``. Output is deterministic, so an
unchanged store rewrites nothing and ETags stay stable across restarts; when a
WebSub hub is configured, changed feeds are announced to it.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import PROJECT_URL, __version__
from aggregator.config.loader import Config, Source, Term
from aggregator.files import (
    FolderLock,
    Writer,
    remove_temps,
    start_pool,
    sync_dirs,
    write_if_changed,
)
from aggregator.parse import iri
from aggregator.parse.sanitize import clean_html, display_safe, shown_title
from aggregator.parse.xmlchars import strip_control
from aggregator.publish.feedpages import Paging, distinct_updated, pages_to_render, shown_updated
from aggregator.publish.jsonfeed import assemble_json, item_bytes, json_head
from aggregator.publish.listing import render_index, render_opml
from aggregator.publish.websub import HubNotifier
from aggregator.store.interface import Storage
from aggregator.store.records import FeedKey, Render, SourceMeta, StoredArticle

log = logging.getLogger("aggregator.publish")

# Fixed namespace for uuid5 ids: an entry's id depends on its share code only.
ID_NAMESPACE = uuid.UUID("6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HISTORY_NS = "http://purl.org/syndication/history/1.0"
MAX_TITLE = 1000  # the parser caps titles too; this guards rows written by other means
ATOM_TYPE = "application/atom+xml"
JSON_TYPE = "application/feed+json"
WRITE_THREADS = 4  # files written (and fsynced) at once
# Bump when what an entry looks like in a document changes: cached fragments go stale.
RENDER_VERSION = "2"


def entry_id(code: str) -> str:
    """The Atom id of an article: stable forever, the same in every feed."""
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'entry:' + code)}"


def feed_id(key: FeedKey) -> str:
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'feed:' + key[0] + ':' + key[1])}"


@dataclass(frozen=True)
class FeedInfo:
    """Where a feed lives and what it is called."""

    key: FeedKey
    path: str  # relative to the output folder, e.g. "tag/sanqin-dushibao-xinwen.xml"
    title: str
    subtitle: str

    @property
    def json_path(self) -> str:
        return self.path.removesuffix(".xml") + ".json"

    def archive_path(self, number: int, suffix: str = ".xml") -> str:
        return f"archive/{self.path.removesuffix('.xml')}/{number}{suffix}"


SUBTITLES = {
    "en": {
        "all": "All articles on {site}",
        "category": "{site}: category {name}",
        "tag": "{site}: tag {name}",
        "source": "{site}: articles from {name}",
    },
    "zh": {
        "all": "{site}的全部文章",
        "category": "{site}：分类“{name}”",
        "tag": "{site}：标签“{name}”",
        "source": "{site}：来自“{name}”的文章",
    },
}


def _subtitle(config: Config, kind: str, name: str, description: str = "") -> str:
    if description:
        return description
    language = config.settings.language.split("-")[0].lower()
    template = SUBTITLES.get(language, SUBTITLES["en"])[kind]
    return template.format(site=config.settings.title, name=name)


def feed_info(config: Config, key: FeedKey) -> FeedInfo:
    """Path, title (the name in its own script) and subtitle of a feed."""
    kind, name = key
    if kind == "all":
        return FeedInfo(key, "all.xml", config.settings.title, _subtitle(config, kind, ""))
    if kind in ("category", "tag"):
        term = config.category_term(name) if kind == "category" else config.tag_term(name)
        return FeedInfo(
            key,
            f"{kind}/{term.slug}.xml",
            term.name,
            _subtitle(config, kind, term.name, term.description),
        )
    source = config.source(name)
    title = source.name if source else name
    return FeedInfo(key, f"source/{name}.xml", title, _subtitle(config, kind, title))


# --- what the renderers show, prepared once per article ------------------------------


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
class Document:
    """One feed document: the current one or an archive page, in one format."""

    info: FeedInfo
    entries: tuple[EntryView, ...]
    self_url: str
    current_url: str  # the subscription document in the same format
    alternate_url: str  # the same document in the other format
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


def _title(text: str) -> str:
    """A title or name as shown: stored ones are clean already, but rows written by
    other means or before the display hazards were removed may not be."""
    text = display_safe(strip_control(text)).strip()
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1].rstrip() + "…"


def _source_view(row: SourceMeta, source: Source | None) -> SourceView:
    """The source as atom:source shows it. Its id is the source feed's own made a
    canonical URI, else (a feed without one) its link's or its URL's; an id that
    cannot be one (a malformed urn:uuid:, say) is replaced by one of ours. The store
    keeps what the feed said."""
    name = (source.name if source else row.name) or row.id
    link = iri.link(row.feed_link or "")
    feed_url = iri.link(row.moved_to or (source.url if source else row.url) or "")
    given = row.feed_id or ""
    source_id = (
        iri.feed_id(given) if given.strip() else iri.feed_id(link) or iri.feed_id(feed_url)
    ) or f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'source:' + row.id)}"
    return SourceView(
        id=source_id,
        title=_title(row.feed_title or name) or name,
        link=link,
        feed_url=feed_url,
        author=_title((source.attribution if source else None) or name),
    )


# --- feedgen extensions: what feedgen 1.0 cannot write itself ------------------------


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
    generator = _generator()
    _set_head(generator, doc, config)
    for view in doc.entries:
        _add_entry(generator, view)
    return bytes(generator.atom_str(pretty=True, encoding="UTF-8"))


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
    generator.title(_title(doc.info.title))
    generator.subtitle(strip_control(doc.subtitle))
    generator.language(settings.language)
    generator.author({"name": strip_control(settings.author)})
    generator.link(href=doc.self_url, rel="self", type=ATOM_TYPE)
    generator.link(href=settings.base_url + "/", rel="alternate", type="text/html")
    generator.link(href=doc.alternate_url, rel="alternate", type=JSON_TYPE)
    if doc.hub:
        generator.link(href=doc.hub, rel="hub")
    if doc.archive_number:
        generator.link(href=doc.current_url, rel="current", type=ATOM_TYPE)
    if doc.prev_archive:
        generator.link(href=doc.prev_archive, rel="prev-archive", type=ATOM_TYPE)
    if doc.next_archive:
        generator.link(href=doc.next_archive, rel="next-archive", type=ATOM_TYPE)
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


# --- the publisher -------------------------------------------------------------------


class Publisher:
    def __init__(
        self, config: Config, store: Storage, *, notifier: HubNotifier | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.notifier = notifier
        self._source_meta: dict[str, SourceView] = {}
        # Term lookups (jieba + pinyin for names without a pinned slug) per config:
        # every entry of every feed asks again for the same few names.
        self._terms: tuple[Config, dict[tuple[str, str], Term]] = (config, {})
        self._infos: tuple[Config, dict[FeedKey, FeedInfo]] = (config, {})
        self._contexts: dict[str, str] = {}  # by source; reset with the source metadata
        self._listings: tuple[object, list[tuple[str, bytes]]] = (None, [])
        self._meta_memo: tuple[Config, dict[SourceMeta, SourceView]] = (config, {})
        self._sources_loaded_for: tuple[Config, int] | None = None  # see _load_sources
        self._writers: ThreadPoolExecutor | None = None  # started by the first publish
        self._pool_lock = threading.Lock()
        self._swept = False  # temp files of killed writers removed (see publish)

    def _term(self, kind: str, name: str) -> Term:
        if self._terms[0] is not self.config:  # the daemon swaps in a reloaded config
            self._terms = (self.config, {})
        memo = self._terms[1]
        found = memo.get((kind, name))
        if found is None:
            lookup = self.config.category_term if kind == "category" else self.config.tag_term
            found = memo[(kind, name)] = lookup(name)
        return found

    def info(self, key: FeedKey) -> FeedInfo:
        if self._infos[0] is not self.config:
            self._infos = (self.config, {})
        found = self._infos[1].get(key)
        if found is None:
            found = self._infos[1][key] = feed_info(self.config, key)
        return found

    @property
    def output(self) -> Path:
        return self.config.settings.output_dir

    def url_of(self, path: str) -> str:
        return f"{self.config.settings.base_url}/{path}"

    def publish(
        self, keys: Iterable[FeedKey] | None = None, *, rebuild: bool = False
    ) -> list[Path]:
        """Regenerate the given feeds (all when None), and every feed a change was
        committed to since it was last published (by any process: a publish cut
        short by a kill included); returns the files rewritten.

        Renders the current documents, the newest archive page and any missing
        archive page; older archive pages are left alone unless rebuild is set.
        Unchanged files are never rewritten. A feed that lost its last entry
        (retention) is rewritten empty rather than left listing removed entries.
        One publish at a time writes in the output folder (FolderLock); the first of
        this publisher also removes the temp files killed writers left there.
        """
        with FolderLock(self.output):
            if not self._swept:
                if removed := remove_temps(self.output):
                    log.info("removed %d temp file(s) left by a killed writer", removed)
                self._swept = True
            # Read before anything is rendered: a change committed after this keeps its mark.
            marks, holes = self.store.unpublished(), self.store.holes()
            all_keys = self.store.feed_keys()
            asked = all_keys if keys is None else {*keys, ("all", "")}
            due = asked | marks.keys() | holes.keys()
            emptied = {k for k in due - all_keys if (self.output / self.info(k).path).exists()}
            wanted = (due & all_keys) | emptied
            written = self._write(wanted, all_keys, rebuild, holes)
            self.store.mark_published(marks, holes)  # the files are durable now
        changed = set(written)
        topics: list[str] = []
        for key in sorted(wanted):
            info = self.info(key)
            for path in (self.output / info.path, self.output / info.json_path):
                if path in changed:
                    topics.append(self.url_of(str(path.relative_to(self.output))))
        self._announce(topics)
        return written

    def _write(
        self,
        wanted: set[FeedKey],
        all_keys: set[FeedKey],
        rebuild: bool,
        holes: dict[FeedKey, set[int]],
    ) -> list[Path]:
        """The wanted feeds' documents and the listings, written and made durable."""
        self._load_sources()
        written: list[Path] = []
        with Writer(self._pool()) as writer:
            for key in sorted(wanted):
                written += self._publish_feed(
                    self.info(key), rebuild, writer, holes.get(key, set())
                )
            written += writer.drain()
            for name, data in self._listing([self.info(key) for key in sorted(all_keys)]):
                if write_if_changed(self.output / name, data, sync_dir=False):
                    written.append(self.output / name)
            writer.sync_dirs(written)  # one fsync per folder, not per file; before any ping
        return written

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._writers is None:
                self._writers = start_pool(WRITE_THREADS)
            return self._writers

    def _listing(self, infos: list[FeedInfo]) -> list[tuple[str, bytes]]:
        """index.html and feeds.opml, rendered again only when the feeds or config change."""
        memo_key = (self.config, tuple(infos))
        if self._listings[0] != memo_key:
            self._listings = (
                memo_key,
                [
                    ("index.html", render_index(self.config, infos, self.url_of)),
                    ("feeds.opml", render_opml(self.config, infos, self.url_of)),
                ],
            )
        return self._listings[1]

    def _announce(self, topics: list[str]) -> None:
        hub = self.config.settings.hub
        if not hub or not topics:
            return
        if self.notifier is None:
            self.notifier = HubNotifier(user_agent=self.config.settings.user_agent)
        self.notifier.notify(hub, topics)

    def close(self, timeout: float = 5.0) -> None:
        """Let queued hub pings go out (bounded), then stop the pinger and the writers."""
        if self.notifier is not None:
            self.notifier.close(timeout)
        with self._pool_lock:
            pool, self._writers = self._writers, None
        if pool is not None:
            pool.shutdown(wait=True)

    def paging(self, key: FeedKey) -> Paging:
        settings = self.config.settings
        next_position = self.store.position_feed(key)
        return Paging(next_position, settings.feed_entries, settings.archive_entries)

    def _publish_feed(
        self, info: FeedInfo, rebuild: bool, writer: Writer, holes: set[int] | None = None
    ) -> list[Path]:
        """New archive pages (oldest first), then the pages rewritten, then the current
        document. New pages are made durable (one fsync per folder) before any document
        linking to them is written, so a reader (or a crash) never finds a prev-archive
        link leading nowhere; the rest wait for publish()'s one fsync per folder.
        Returns the files known written so far (the writer finishes the rest)."""
        paging = self.paging(info.key)
        exists = self._archived_pages(info, paging)
        pages = pages_to_render(paging, exists, rebuild, holes or ())
        fresh = [n for n in pages if n not in exists]
        written = []
        if fresh:
            for number in fresh:
                self._write_pair(info, paging, number, writer)
            written = writer.drain()
            archive = self.output / info.archive_path(1)
            sync_dirs(path for path in written if path.parent == archive.parent)
        for number in [n for n in pages if n in exists] + [0]:
            self._write_pair(info, paging, number, writer)
        return written

    def _archived_pages(self, info: FeedInfo, paging: Paging) -> list[int]:
        """Archive pages present in both formats (one folder listing, not a stat each)."""
        if not paging.archived:
            return []
        folder = (self.output / info.archive_path(1)).parent
        try:
            names = set(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [
            n for n in range(1, paging.archived + 1) if f"{n}.xml" in names and f"{n}.json" in names
        ]

    def _write_pair(self, info: FeedInfo, paging: Paging, number: int, writer: Writer) -> None:
        for doc, data in self._render_pair(info, paging, number):
            writer.write(self.output / doc.self_url.removeprefix(self.url_of("")), data)

    def _documents(self, info: FeedInfo, paging: Paging, number: int) -> tuple[Document, Document]:
        """The (Atom, JSON) documents of one page (0: the current one), without entries."""
        pairs = []
        for suffix, other in ((".xml", ".json"), (".json", ".xml")):
            current = info.path if suffix == ".xml" else info.json_path

            def url(n: int, suffix: str = suffix) -> str:
                return self.url_of(info.archive_path(n, suffix)) if n else ""

            own = info.archive_path(number, suffix) if number else current
            alternate = (
                info.archive_path(number, other) if number else own.removesuffix(suffix) + other
            )
            newest = paging.archived
            pairs.append(
                Document(
                    info=info,
                    entries=(),
                    self_url=self.url_of(own),
                    current_url=self.url_of(current),
                    alternate_url=self.url_of(alternate),
                    prev_archive=url(number - 1 if number else newest),
                    next_archive=url(number + 1) if number and number < newest else "",
                    archive_number=number,
                    hub="" if number else self.config.settings.hub,
                )
            )
        return pairs[0], pairs[1]

    def _pair(self, info: FeedInfo, paging: Paging, number: int) -> tuple[Document, Document]:
        """Both documents of one page with their entries (the uncached way: render_atom)."""
        start, stop = paging.page(number) if number else paging.current
        entries = self.views(self.store.positioned_articles(info.key, start, stop))
        atom, json_doc = self._documents(info, paging, number)
        return replace(atom, entries=entries), replace(json_doc, entries=entries)

    # --- rendering from cached fragments ---

    def _render_pair(
        self, info: FeedInfo, paging: Paging, number: int
    ) -> list[tuple[Document, bytes]]:
        """Both documents of one page, assembled from each entry's cached fragments;
        byte for byte what render_atom and render_json_feed give."""
        start, stop = paging.page(number) if number else paging.current
        rows = self.store.positioned_renders(info.key, start, stop)
        shown = distinct_updated((row.code, row.updated) for row in rows)
        wanted = {
            row.code: (self._context(row.source_id), shown[row.code].isoformat()) for row in rows
        }
        renders = {
            row.code: row.render
            for row in rows
            if row.render and (row.render.context, row.render.shown) == wanted[row.code]
        }
        missing = [row.code for row in rows if row.code not in renders]
        if missing:
            renders.update(self.store.fill_renders(missing, self._render_entries))
        # A fraction clash within this document (feedpages.distinct_updated) shows
        # another time than the cached one: rendered for this document only.
        odd = [c for c, r in renders.items() if (r.context, r.shown) != wanted[c]]
        if odd:
            articles = self.store.articles_by_code(odd)
            renders.update(self._renders([(articles[c], shown[c]) for c in odd if c in articles]))
        present = [row for row in rows if row.code in renders]  # one deleted meanwhile
        atom, json_doc = self._documents(info, paging, number)
        updated = max((shown[row.code] for row in present), default=EPOCH)
        atom, json_doc = replace(atom, updated_at=updated), replace(json_doc, updated_at=updated)
        return [
            (atom, assemble_atom(atom, self.config, [renders[r.code].atom for r in present])),
            (
                json_doc,
                assemble_json(
                    json_head(json_doc, self.config), [renders[r.code].json for r in present]
                ),
            ),
        ]

    def _render_entries(self, articles: dict[str, StoredArticle]) -> list[tuple[str, Render]]:
        return list(
            self._renders(
                [(a, shown_updated(a.code, a.updated)) for a in articles.values()]
            ).items()
        )

    def _renders(self, items: Sequence[tuple[StoredArticle, datetime]]) -> dict[str, Render]:
        """Both fragments of each (article, updated shown)."""
        views = [self._view(article, updated) for article, updated in items]
        atoms = entry_fragments(views)
        return {
            article.code: Render(
                context=self._context(article.source_id),
                shown=view.updated.isoformat(),
                atom=atom,
                json=item_bytes(view),
            )
            for (article, _), view, atom in zip(items, views, atoms, strict=True)
        }

    def _context(self, source_id: str) -> str:
        """What an entry's fragments depend on besides the entry and its category and
        tag names (a change to those drops them, see store migration 6): the program,
        the base URL, the config's terms and its source's metadata. Kept with them."""
        found = self._contexts.get(source_id)
        if found is None:
            config = self.config
            described = repr(
                (
                    RENDER_VERSION,
                    __version__,
                    config.settings.base_url,
                    sorted(config.categories.items()),
                    sorted(config.tags.items()),
                    self._source_meta.get(source_id),
                )
            )
            found = hashlib.blake2b(described.encode("utf-8"), digest_size=16).hexdigest()
            self._contexts[source_id] = found
        return found

    def _load_sources(self) -> None:
        """Source metadata as of now; the contexts computed from it go with it. Kept
        while the config and the store's version of it stand (reading a thousand rows
        was a sixth of an incremental publish)."""
        version = self.store.version("source_meta")
        loaded = self._sources_loaded_for
        if loaded and loaded[0] is self.config and loaded[1] == version and self._source_meta:
            return
        self._source_meta = self._load_source_meta()
        self._contexts = {}
        self._sources_loaded_for = (self.config, version)

    def views(self, articles: list[StoredArticle]) -> tuple[EntryView, ...]:
        """Articles as the renderers show them: cleaned, capped, with distinct updated."""
        if not self._source_meta:
            self._load_sources()
        shown = distinct_updated((a.code, a.updated) for a in articles)
        return tuple(self._view(a, shown[a.code]) for a in articles)

    def _view(self, article: StoredArticle, updated: datetime) -> EntryView:
        base = self.config.settings.base_url
        link = iri.link(article.link)
        title = _title(shown_title(article.title, article.summary, article.content, link))
        content = clean_html(article.content or article.summary) or html.escape(title)
        categories = [
            Category(term.slug, term.name, f"{base}/category/")
            for term in (self._term("category", n) for n in article.entry_categories)
        ] + [
            Category(term.slug, term.name, f"{base}/tag/")
            for term in (self._term("tag", n) for n in article.tags)
        ]
        return EntryView(
            id=entry_id(article.code),
            title=title,
            link=link,
            published=article.published,
            updated=updated,
            author=_title(article.author),
            summary=clean_html(article.summary) if article.summary else "",
            content=content,
            categories=tuple(categories),
            enclosures=tuple(
                (url, strip_control(e.type), e.length)
                for url, e in ((iri.link(e.url), e) for e in article.enclosures)
                if url
            ),
            source=self._source_meta.get(article.source_id),
        )

    def _load_source_meta(self) -> dict[str, SourceView]:
        # Views of unchanged rows are kept (else every publish parses every source's
        # URLs again); the memo holds only the rows seen last.
        if self._meta_memo[0] is not self.config:
            self._meta_memo = (self.config, {})
        previous, memo = self._meta_memo[1], {}
        configured: dict[str, Source] | None = None
        for row in self.store.source_meta_rows():
            view = previous.get(row)
            if view is None:
                if configured is None:
                    configured = {source.id: source for source in self.config.sources}
                view = _source_view(row, configured.get(row.id))
            memo[row] = view
        self._meta_memo = (self.config, memo)
        return {row.id: view for row, view in memo.items()}

    def documents(self, key: FeedKey) -> dict[str, bytes]:
        """Every document of one feed (the current one and each full archive page, Atom
        and JSON Feed) as publish() would write it, by path under the output folder;
        nothing is written (`aggregator migrate-store` compares two stores by them)."""
        self._load_sources()
        info = self.info(key)
        paging = self.paging(key)
        return {
            doc.self_url.removeprefix(self.url_of("")): data
            for number in range(paging.archived + 1)
            for doc, data in self._render_pair(info, paging, number)
        }

    # --- kept for callers of the first version ---

    def render(self, info: FeedInfo) -> bytes:
        """The current Atom document of a feed."""
        return render_atom(self._pair(info, self.paging(info.key), 0)[0], self.config)

    def feed_urls(self) -> list[str]:
        return [self.url_of(self.info(k).path) for k in sorted(self.store.feed_keys())]
