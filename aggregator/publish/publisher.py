"""Republish the store as feeds under the output folder.

One feed per category, per tag, per source, and one of everything, each in every
output format the config chooses (aggregator.publish.formats: Atom ``all.xml``,
JSON Feed ``all.json``, RSS ``all.rss``; ``category/<slug>``, ``tag/<slug>``,
``source/<id>``). Older entries live in RFC 5005 archive pages
``archive/<feed>/<n>.xml`` (and ``.json``, ``.rss``) that never change once
written (see aggregator.publish.feedpages). Plus ``index.html`` with autodiscovery
links and ``feeds.opml``. Output is deterministic, so an
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from aggregator import __version__
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
from aggregator.parse.sanitize import clean_html, shown_title
from aggregator.parse.xmlchars import strip_control
from aggregator.publish import shells
from aggregator.publish.assembled import AssembledFragments
from aggregator.publish.documents import (
    EPOCH,
    ID_NAMESPACE,
    Category,
    Document,
    EntryView,
    FeedInfo,
    Link,
    OutputFormat,
    SourceView,
    entry_id,
    shown_name,
)
from aggregator.publish.feedpages import Paging, distinct_updated, pages_to_render, shown_updated
from aggregator.publish.formats import chosen
from aggregator.publish.listing import (
    INDEX_PATH,
    LISTING_FILES,
    OPML_PATH,
    render_index,
    render_opml,
)
from aggregator.publish.record import PublishRecord, digest, read_record, write_record
from aggregator.publish.renderpack import Render, pack, unpack
from aggregator.publish.websub import HubNotifier
from aggregator.store.interface import Storage
from aggregator.store.records import FeedKey, PositionedRender, SourceMeta, StoredArticle

__all__ = ["ID_NAMESPACE", "Document", "FeedInfo", "Publisher", "entry_id", "feed_info"]

log = logging.getLogger("aggregator.publish")

WRITE_THREADS = 4  # files written (and fsynced) at once


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
        return FeedInfo(key, "all", config.settings.title, _subtitle(config, kind, ""))
    if kind in ("category", "tag"):
        term = config.category_term(name) if kind == "category" else config.tag_term(name)
        return FeedInfo(
            key,
            f"{kind}/{term.slug}",
            term.name,
            _subtitle(config, kind, term.name, term.description),
        )
    source = config.source(name)
    title = source.name if source else name
    return FeedInfo(key, f"source/{name}", title, _subtitle(config, kind, title))


# --- what the renderers show, prepared once per article ------------------------------


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
        title=shown_name(row.feed_title or name) or name,
        link=link,
        feed_url=feed_url,
        author=shown_name((source.attribution if source else None) or name),
    )


# --- the publisher -------------------------------------------------------------------


_FORGETFUL = AssembledFragments(limit=0)  # for pages whose fragments are not kept


class _Written:
    """One entry's content as each format writes it, written once for the formats that
    write it alike (Atom and RSS)."""

    def __init__(self, content: str) -> None:
        self.content = content
        self._done: dict[Callable[[str], bytes], bytes] = {}

    def by(self, fmt: OutputFormat) -> Callable[[], bytes]:
        def write() -> bytes:
            found = self._done.get(fmt.write_content)
            if found is None:
                found = self._done[fmt.write_content] = fmt.write_content(self.content)
            return found

        return write


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
        self._formats = (config, chosen(config))  # a ConfigError for an unknown format
        # By source and format version; reset with the source metadata.
        self._contexts: dict[tuple[str, str], str] = {}
        # Fragments assembled before, for entries met again (publish.assembled).
        self._assembled = AssembledFragments()
        self._remembering = False  # this publish keeps what it assembles (see publish)
        self._meta_memo: tuple[Config, dict[SourceMeta, SourceView]] = (config, {})
        self._sources_loaded_for: tuple[Config, int] | None = None  # see _load_sources
        self._writers: ThreadPoolExecutor | None = None  # started by the first publish
        self._pool_lock = threading.Lock()
        self._swept = False  # temp files of killed writers removed (see publish)
        self._config_digest: tuple[Config | None, str] = (None, "")
        self._record: PublishRecord | None = None  # what the folder holds (see record.py)

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
    def formats(self) -> tuple[OutputFormat, ...]:
        """The output formats the config chooses, in its order."""
        if self._formats[0] is not self.config:
            self._formats = (self.config, chosen(self.config))
        return self._formats[1]

    @property
    def output(self) -> Path:
        return self.config.settings.output_dir

    def url_of(self, path: str) -> str:
        return f"{self.config.settings.base_url}/{path}"

    def publish(
        self,
        keys: Iterable[FeedKey] | None = None,
        *,
        rebuild: bool = False,
        give_up: Callable[[], bool] | None = None,
    ) -> list[Path]:
        """Regenerate the given feeds (all when None), and every feed a change was
        committed to since it was last published (by any process: a publish cut
        short by a kill included); returns the files rewritten.

        Renders the current documents, the newest archive page and any missing
        archive page; older archive pages are left alone unless rebuild is set.
        Unchanged files are never rewritten. A feed that lost its last entry
        (retention) is rewritten empty rather than left listing removed entries.
        One publish at a time writes in the output folder (FolderLock); the first of
        this publisher also removes the temp files killed writers left there. Once
        give_up() says so (a daemon stopping), the feeds not yet rendered are left
        with their marks, for the next publish.
        """
        with FolderLock(self.output):
            if not self._swept:
                if removed := remove_temps(self.output):
                    log.info("removed %d temp file(s) left by a killed writer", removed)
                self._swept = True
            # Read before anything is rendered: a change committed after this keeps its mark.
            marks, holes = self.store.unpublished(), self.store.holes()
            all_keys = self.store.feed_keys()
            record = self._current_record(all_keys)
            if keys is None and not rebuild:
                asked = {key for key in all_keys if not self._recorded(record, key)}
            elif keys is None:
                asked = all_keys
            else:  # a change to any feed is one to the feed of everything
                asked = {*keys, ("all", "")} if keys else set()
            # Assembled fragments are kept for the next publish only from one of a few
            # feeds (a daemon's): a publish of every feed would only churn them.
            self._remembering = keys is not None
            due = asked | marks.keys() | holes.keys()
            emptied = {k for k in due - all_keys if self._published_before(k)}
            wanted = (due & all_keys) | emptied
            listing = not record.holds(self.output, LISTING_FILES)
            written, left = self._write(wanted, all_keys, rebuild, holes, listing, give_up)
            done = wanted - left
            record.note(self.output, [n for k in done for n in self._current_files(k)])
            record.note(self.output, LISTING_FILES)
            if keys is None:
                write_record(self.output, record)
            # The files are durable now.
            self.store.mark_published(
                {k: m for k, m in marks.items() if k not in left},
                {k: seqs for k, seqs in holes.items() if k not in left},
            )
        changed = set(written)
        topics = [
            self.url_of(name)
            for key in sorted(wanted)
            for name in (self.info(key).file(f.suffix) for f in self.formats)
            if self.output / name in changed
        ]
        self._announce(topics)
        return written

    def _current_record(self, all_keys: set[FeedKey]) -> PublishRecord:
        """The record of the folder for the config and store as they are now: the one
        kept since the last publish, else the folder's, else an empty one."""
        config = self.config
        if self._config_digest[0] is not config:
            self._config_digest = (config, digest(config))
        context = digest(
            __version__,
            [(f.name, f.version) for f in self.formats],
            self._config_digest[1],
            self.store.version("source_meta"),
            sorted(all_keys),  # not version("feed_keys"): publishing itself moves that
        )
        if self._record is None or self._record.context != context:
            self._record = read_record(self.output, context) or PublishRecord(context)
        return self._record

    def _current_files(self, key: FeedKey) -> list[str]:
        info = self.info(key)
        return [info.file(f.suffix) for f in self.formats]

    def _recorded(self, record: PublishRecord, key: FeedKey) -> bool:
        """Whether the feed's files are the ones the record says show the store."""
        info = self.info(key)
        suffixes = [f.suffix for f in self.formats]
        return record.holds(self.output, self._current_files(key)) and record.archived(
            self.output, info.archive_folder, suffixes
        )

    def _published_before(self, key: FeedKey) -> bool:
        info = self.info(key)
        return any((self.output / info.file(f.suffix)).exists() for f in self.formats)

    def _write(
        self,
        wanted: set[FeedKey],
        all_keys: set[FeedKey],
        rebuild: bool,
        holes: dict[FeedKey, set[int]],
        listing: bool,
        give_up: Callable[[], bool] | None = None,
    ) -> tuple[list[Path], set[FeedKey]]:
        """The wanted feeds' documents and (when asked) the listings, written and made
        durable; and the wanted feeds left unrendered because give_up() said so."""
        if not wanted and not listing:
            return [], set()
        self._load_sources()
        written: list[Path] = []
        left = set(wanted)
        with Writer(self._pool()) as writer:
            for key in sorted(wanted):
                if give_up is not None and give_up():
                    break
                written += self._publish_feed(
                    self.info(key), rebuild, writer, holes.get(key, set())
                )
                left.discard(key)
            written += writer.drain()
            if listing:
                for name, data in self._listing([self.info(key) for key in sorted(all_keys)]):
                    if write_if_changed(self.output / name, data, sync_dir=False):
                        written.append(self.output / name)
            writer.sync_dirs(written)  # one fsync per folder, not per file; before any ping
        return written, left

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._writers is None:
                self._writers = start_pool(WRITE_THREADS)
            return self._writers

    def _listing(self, infos: list[FeedInfo]) -> Iterator[tuple[str, bytes]]:
        """index.html and feeds.opml, one at a time. Not kept: _write asks for them only
        when the record says the feeds or config changed, and with tens of thousands of
        sources they run to tens of megabytes."""
        yield INDEX_PATH, render_index(self.config, infos, self.formats, self.url_of)
        yield OPML_PATH, render_opml(self.config, infos, self.formats, self.url_of)

    def _announce(self, topics: list[str]) -> None:
        hub = self.config.settings.hub
        if not hub or not topics:
            return
        if self.notifier is None:
            self.notifier = HubNotifier(user_agent=self.config.settings.user_agent)
        self.notifier.notify(hub, topics)

    def close(self, timeout: float = 5.0) -> None:
        """Keep the record of what this publisher wrote, let queued hub pings go out
        (bounded), then stop the pinger and the writers."""
        if self._record is not None and self._record.files:
            with FolderLock(self.output):
                write_record(self.output, self._record)
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
                self._write_page(info, paging, number, writer)
            written = writer.drain()
            archive = self.output / info.archive_folder
            sync_dirs(path for path in written if path.parent == archive)
        for number in [n for n in pages if n in exists] + [0]:
            self._write_page(info, paging, number, writer)
        if self._record is not None:
            self._record.archives[info.archive_folder] = paging.archived
        return written

    def _archived_pages(self, info: FeedInfo, paging: Paging) -> list[int]:
        """Archive pages present in every format (one folder listing, not a stat each)."""
        if not paging.archived:
            return []
        folder = self.output / info.archive_folder
        try:
            names = set(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        suffixes = [f.suffix for f in self.formats]
        return [
            n
            for n in range(1, paging.archived + 1)
            if all(f"{n}{suffix}" in names for suffix in suffixes)
        ]

    def _write_page(self, info: FeedInfo, paging: Paging, number: int, writer: Writer) -> None:
        remember = self._remembering and not number  # archive pages are written once
        for doc, data in self._render_page(info, paging, number, remember):
            writer.write(self.output / doc.self_url.removeprefix(self.url_of("")), data)

    def _documents(
        self, info: FeedInfo, paging: Paging, number: int
    ) -> list[tuple[OutputFormat, Document]]:
        """Each format's document of one page (0: the current one), without entries."""
        newest = paging.archived

        def path(n: int, suffix: str) -> str:
            return info.archive_file(n, suffix) if n else info.file(suffix)

        def archive_url(n: int, suffix: str) -> str:
            return self.url_of(info.archive_file(n, suffix)) if n else ""

        documents = []
        for fmt in self.formats:
            alternates = tuple(
                Link(self.url_of(path(number, other.suffix)), other.media_type)
                for other in self.formats
                if other is not fmt and other.announced
            )
            document = Document(
                info=info,
                entries=(),
                self_url=self.url_of(path(number, fmt.suffix)),
                current_url=self.url_of(info.file(fmt.suffix)),
                alternates=alternates,
                prev_archive=archive_url(number - 1 if number else newest, fmt.suffix),
                next_archive=archive_url(number + 1, fmt.suffix)
                if number and number < newest
                else "",
                archive_number=number,
                hub="" if number else self.config.settings.hub,
            )
            documents.append((fmt, document))
        return documents

    def page_documents(
        self, info: FeedInfo, paging: Paging, number: int
    ) -> list[tuple[OutputFormat, Document]]:
        """Every format's document of one page with its entries: what the formats'
        render() turn into the published bytes (the uncached way)."""
        start, stop = paging.page(number) if number else paging.current
        entries = self.views(self.store.positioned_articles(info.key, start, stop))
        return [
            (f, replace(doc, entries=entries)) for f, doc in self._documents(info, paging, number)
        ]

    # --- rendering from cached fragments ---

    def _render_page(
        self, info: FeedInfo, paging: Paging, number: int, remember: bool = False
    ) -> list[tuple[Document, bytes]]:
        """Every format's document of one page, assembled from each entry's cached
        fragments; byte for byte what the formats' render() give."""
        start, stop = paging.page(number) if number else paging.current
        rows = self.store.positioned_renders(info.key, start, stop)
        shown = distinct_updated((row.code, row.updated) for row in rows)
        fragments: dict[tuple[str, str], bytes] = {}  # (code, format name) -> fragment
        stale: dict[str, list[OutputFormat]] = {}  # code -> formats with none cached
        assembled = self._assembled if remember else _FORGETFUL
        for row in rows:
            when = shown[row.code].isoformat()
            if lacking := self._cached_fragments(row, when, fragments, assembled):
                stale[row.code] = lacking
        if stale:
            self._render_stale(rows, stale, shown, fragments, assembled)
        # An entry deleted meanwhile has no fragments: it is left out.
        formats = self.formats
        present = [r for r in rows if all((r.code, f.name) in fragments for f in formats)]
        updated = max((shown[row.code] for row in present), default=EPOCH)
        pages = []
        for fmt, doc in self._documents(info, paging, number):
            doc = replace(doc, updated_at=updated)
            entries = [fragments[(row.code, fmt.name)] for row in present]
            pages.append((doc, fmt.assemble(doc, self.config, entries)))
        return pages

    def _cached_fragments(
        self,
        row: PositionedRender,
        shown: str,
        fragments: dict[tuple[str, str], bytes],
        assembled: AssembledFragments,
    ) -> list[OutputFormat]:
        """The entry's fragments in every format, from those this publisher assembled
        before or from its render cache row, into `fragments`; the formats of which
        neither has one for this (context, shown time)."""
        unpacked: dict[str, Render] | None = None
        written = _Written(row.content)
        lacking = []
        for fmt in self.formats:
            want = (self._context(row.source_id, fmt), shown)
            fragment = assembled.get(row.code, fmt.name, row.cached, want)
            if fragment is None:
                if unpacked is None:
                    unpacked = unpack(row.cached, row.content) if row.cached else {}
                render = unpacked.get(fmt.name)
                if render is None or (render.context, render.shown) != want:
                    lacking.append(fmt)
                    continue
                fragment = shells.fill(render.body, written.by(fmt))
                assembled.put(row.code, fmt.name, row.cached, want, fragment)
            fragments[(row.code, fmt.name)] = fragment
        return lacking

    def _render_stale(
        self,
        rows: Sequence[PositionedRender],
        stale: dict[str, list[OutputFormat]],
        shown: dict[str, datetime],
        fragments: dict[tuple[str, str], bytes],
        assembled: AssembledFragments,
    ) -> None:
        """Render the fragments missing from the render cache, keep them there beside
        the other formats' (one transaction with reading the entries), and add them
        to `fragments`."""
        old = {row.code: row.cached for row in rows if row.code in stale}
        made: dict[str, tuple[str, dict[str, Render]]] = {}  # code -> (content, renders)

        def repack(articles: dict[str, StoredArticle]) -> dict[str, bytes]:
            fresh = self._renders(
                [(a, shown_updated(a.code, a.updated)) for a in articles.values()], stale
            )
            packs = {}
            for code, article in articles.items():
                blob = old.get(code)
                kept = unpack(blob, article.content) if blob else {}
                renders = kept | fresh.get(code, {})
                made[code] = (article.content, renders)
                packs[code] = pack(renders, article.content)
            return packs

        packs = self.store.fill_renders(list(stale), repack)
        # A fraction clash within this document (feedpages.distinct_updated) shows
        # another time than the cached one: rendered for this document only.
        odd: dict[str, list[OutputFormat]] = {}
        for code, (content, renders) in made.items():
            when = shown[code].isoformat()
            written = _Written(content)
            for fmt in stale[code]:
                render = renders[fmt.name]  # rendered just now: its context is current
                if render.shown != when:
                    odd.setdefault(code, []).append(fmt)
                    continue
                want = (render.context, when)
                fragment = shells.fill(render.body, written.by(fmt))
                assembled.put(code, fmt.name, packs[code], want, fragment)
                fragments[(code, fmt.name)] = fragment
        if odd:
            articles = self.store.articles_by_code(list(odd))
            items = [(articles[c], shown[c]) for c in odd if c in articles]
            for code, renders in self._renders(items, odd).items():
                written = _Written(articles[code].content)
                for fmt in odd[code]:
                    fragments[(code, fmt.name)] = shells.fill(
                        renders[fmt.name].body, written.by(fmt)
                    )

    def _renders(
        self,
        items: Sequence[tuple[StoredArticle, datetime]],
        needs: dict[str, list[OutputFormat]],
    ) -> dict[str, dict[str, Render]]:
        """The fragments of each (article, updated shown) in the formats it needs, by
        code and format name; each format renders its entries in one batch."""
        views = [(article, self._view(article, updated)) for article, updated in items]
        written = {article.code: _Written(article.content) for article, _ in views}
        renders: dict[str, dict[str, Render]] = {}
        for fmt in self.formats:
            batch = [(a, v) for a, v in views if fmt in needs.get(a.code, ())]
            bodies = fmt.fragments([view for _, view in batch]) if batch else []
            for (article, view), body in zip(batch, bodies, strict=True):
                # Only the stored HTML can be left out: it is what assembly writes back.
                stored = view.content == article.content
                renders.setdefault(article.code, {})[fmt.name] = Render(
                    self._context(article.source_id, fmt),
                    view.updated.isoformat(),
                    shells.cut(body, written[article.code].by(fmt)() if stored else b""),
                )
        return renders

    def _context(self, source_id: str, fmt: OutputFormat) -> str:
        """What an entry's fragment in a format depends on besides the entry and its
        category and tag names (a change to those drops it, see store migration 6): the
        format's version, the program, the base URL, the config's terms and its
        source's metadata. Kept with it."""
        found = self._contexts.get((source_id, fmt.version))
        if found is None:
            config = self.config
            described = repr(
                (
                    fmt.version,
                    __version__,
                    config.settings.base_url,
                    sorted(config.categories.items()),
                    sorted(config.tags.items()),
                    self._source_meta.get(source_id),
                )
            )
            found = hashlib.blake2b(described.encode("utf-8"), digest_size=16).hexdigest()
            self._contexts[(source_id, fmt.version)] = found
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
        title = shown_name(shown_title(article.title, article.summary, article.content, link))
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
            author=shown_name(article.author),
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
        """Every document of one feed (the current one and each full archive page, in
        every format) as publish() would write it, by path under the output folder;
        nothing is written (`aggregator migrate-store` compares two stores by them)."""
        self._load_sources()
        info = self.info(key)
        paging = self.paging(key)
        return {
            doc.self_url.removeprefix(self.url_of("")): data
            for number in range(paging.archived + 1)
            for doc, data in self._render_page(info, paging, number)
        }

    # --- kept for callers of the first version ---

    def render(self, info: FeedInfo) -> bytes:
        """The current document of a feed in the first format the config chooses."""
        fmt, doc = self.page_documents(info, self.paging(info.key), 0)[0]
        return fmt.render(doc, self.config)

    def feed_urls(self) -> list[str]:
        """Each feed's current document in the first format the config chooses."""
        suffix = self.formats[0].suffix
        return [self.url_of(self.info(k).file(suffix)) for k in sorted(self.store.feed_keys())]
