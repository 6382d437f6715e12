"""Republish the store as feeds under the output folder.

One feed per category, per tag, per source, and one of everything, each as
Atom 1.0 (feedgen) and JSON Feed 1.1: ``all.xml``/``all.json``,
``category/<slug>.xml``, ``tag/<slug>.xml``, ``source/<id>.xml``. Older
entries live in RFC 5005 archive pages ``archive/<feed>/<n>.xml`` that never
change once written (see aggregator.feedpages). Plus ``index.html`` with
autodiscovery links and ``feeds.opml``. Output is deterministic, so an
unchanged store rewrites nothing and ETags stay stable across restarts; when a
WebSub hub is configured, changed feeds are announced to it.
"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import PROJECT_URL, __version__
from aggregator.config import Config, Term
from aggregator.feedpages import Paging, distinct_updated, pages_to_render
from aggregator.files import sync_dirs, write_if_changed
from aggregator.jsonfeed import render_json_feed
from aggregator.listing import render_index, render_opml
from aggregator.sanitize import clean_html, strip_control
from aggregator.store import FeedKey, Store, StoredArticle
from aggregator.websub import HubNotifier

log = logging.getLogger("aggregator.publish")

# Fixed namespace for uuid5 ids: an entry's id depends on its share code only.
ID_NAMESPACE = uuid.UUID("6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HISTORY_NS = "http://purl.org/syndication/history/1.0"
MAX_TITLE = 1000  # the parser caps titles too; this guards rows written by other means
ATOM_TYPE = "application/atom+xml"
JSON_TYPE = "application/feed+json"


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

    @property
    def updated(self) -> datetime:
        return max((e.updated for e in self.entries), default=EPOCH)

    @property
    def subtitle(self) -> str:
        if self.archive_number:
            return f"{self.info.subtitle} (archive {self.archive_number})"
        return self.info.subtitle


def _absolute(url: str) -> str:
    parts = urlsplit(url or "")
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def canonical_iri(value: str) -> str:
    """An id as the W3C validator wants it: lower-case scheme and host. "" if not absolute."""
    value = strip_control((value or "").strip())
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme in ("urn", "tag"):
        return f"{scheme}:{parts.path}" if parts.path else ""
    if not scheme or not parts.netloc:
        return ""
    netloc = parts.netloc.lower() if "@" not in parts.netloc else parts.netloc
    for default in (":80", ":443"):
        if netloc.endswith(default) and scheme == {":80": "http", ":443": "https"}[default]:
            netloc = netloc.removesuffix(default)
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def _title(text: str) -> str:
    text = strip_control(text).strip()
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1].rstrip() + "…"


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


def render_atom(doc: Document, config: Config) -> bytes:
    settings = config.settings
    generator = FeedGenerator()
    generator.register_extension("agg", _FeedExtension, _EntryExtension, atom=True, rss=False)
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
    for view in doc.entries:
        _add_entry(generator, view)
    return bytes(generator.atom_str(pretty=True, encoding="UTF-8"))


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
        self, config: Config, store: Store, *, notifier: HubNotifier | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.notifier = notifier
        self._source_meta: dict[str, SourceView] = {}
        # Term lookups (jieba + pinyin for names without a pinned slug) per config:
        # every entry of every feed asks again for the same few names.
        self._terms: tuple[Config, dict[tuple[str, str], Term]] = (config, {})

    def _term(self, kind: str, name: str) -> Term:
        if self._terms[0] is not self.config:  # the daemon swaps in a reloaded config
            self._terms = (self.config, {})
        memo = self._terms[1]
        found = memo.get((kind, name))
        if found is None:
            lookup = self.config.category_term if kind == "category" else self.config.tag_term
            found = memo[(kind, name)] = lookup(name)
        return found

    @property
    def output(self) -> Path:
        return self.config.settings.output_dir

    def url_of(self, path: str) -> str:
        return f"{self.config.settings.base_url}/{path}"

    def publish(
        self, keys: Iterable[FeedKey] | None = None, *, rebuild: bool = False
    ) -> list[Path]:
        """Regenerate the given feeds (all when None); returns the files rewritten.

        Renders the current documents, the newest archive page and any missing
        archive page; older archive pages are left alone unless rebuild is set.
        Unchanged files are never rewritten.
        """
        all_keys = self.store.feed_keys()
        wanted = all_keys if keys is None else (set(keys) & all_keys) | {("all", "")}
        self._source_meta = self._load_source_meta()
        written: list[Path] = []
        topics: list[str] = []
        for key in sorted(wanted):
            info = feed_info(self.config, key)
            changed = self._publish_feed(info, rebuild)
            written += changed
            for path in (self.output / info.path, self.output / info.json_path):
                if path in changed:
                    topics.append(self.url_of(str(path.relative_to(self.output))))
        infos = [feed_info(self.config, key) for key in sorted(all_keys)]
        for name, data in (
            ("index.html", render_index(self.config, infos, self.url_of)),
            ("feeds.opml", render_opml(self.config, infos, self.url_of)),
        ):
            if write_if_changed(self.output / name, data, sync_dir=False):
                written.append(self.output / name)
        sync_dirs(written)  # one fsync per folder, not per file; before any hub ping
        self._announce(topics)
        return written

    def _announce(self, topics: list[str]) -> None:
        hub = self.config.settings.hub
        if not hub or not topics:
            return
        if self.notifier is None:
            self.notifier = HubNotifier(user_agent=self.config.settings.user_agent)
        self.notifier.notify(hub, topics)

    def close(self, timeout: float = 5.0) -> None:
        """Let queued hub pings go out (bounded), then stop the pinger."""
        if self.notifier is not None:
            self.notifier.close(timeout)

    def paging(self, key: FeedKey) -> Paging:
        settings = self.config.settings
        next_position = self.store.position_feed(key)
        return Paging(next_position, settings.feed_entries, settings.archive_entries)

    def _publish_feed(self, info: FeedInfo, rebuild: bool) -> list[Path]:
        paging = self.paging(info.key)
        written = []
        for doc_atom, doc_json in self._documents(info, paging, rebuild):
            for doc, data in (
                (doc_atom, render_atom(doc_atom, self.config)),
                (doc_json, render_json_feed(doc_json, self.config)),
            ):
                path = self.output / doc.self_url.removeprefix(self.url_of(""))
                # An archive page is made durable at once, before the documents that
                # link to it; the rest wait for publish()'s one fsync per folder.
                if write_if_changed(path, data, sync_dir=bool(doc.archive_number)):
                    written.append(path)
        return written

    def _documents(
        self, info: FeedInfo, paging: Paging, rebuild: bool
    ) -> Iterable[tuple[Document, Document]]:
        """(Atom, JSON) pairs: new archive pages (oldest first), then the pages rewritten,
        then the current document. A page is on disk before any link to it, so a reader
        (or a crash) never finds a prev-archive link leading nowhere."""
        exists = [
            n
            for n in range(1, paging.archived + 1)
            if (self.output / info.archive_path(n)).exists()
            and (self.output / info.archive_path(n, ".json")).exists()
        ]
        pages = pages_to_render(paging, exists, rebuild)
        for number in [n for n in pages if n not in exists] + [n for n in pages if n in exists]:
            yield self._pair(info, paging, number)
        yield self._pair(info, paging, 0)

    def _pair(self, info: FeedInfo, paging: Paging, number: int) -> tuple[Document, Document]:
        start, stop = paging.page(number) if number else paging.current
        entries = self.views(self.store.positioned_articles(info.key, start, stop))
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
                    entries=entries,
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

    def views(self, articles: list[StoredArticle]) -> tuple[EntryView, ...]:
        """Articles as the renderers show them: cleaned, capped, with distinct updated."""
        self._source_meta = self._source_meta or self._load_source_meta()
        shown = distinct_updated((a.code, a.updated) for a in articles)
        return tuple(self._view(a, shown[a.code]) for a in articles)

    def _view(self, article: StoredArticle, updated: datetime) -> EntryView:
        base = self.config.settings.base_url
        link = _absolute(strip_control(article.link))
        title = _title(article.title) or link or article.code
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
                (e.url, strip_control(e.type), e.length)
                for e in article.enclosures
                if _absolute(e.url)
            ),
            source=self._source_meta.get(article.source_id),
        )

    def _load_source_meta(self) -> dict[str, SourceView]:
        meta = {}
        for row in self.store.source_rows():
            source = self.config.source(row["id"])
            name = (source.name if source else row["name"]) or row["id"]
            link = _absolute(row["feed_link"] or "")
            fetched = row["moved_to"] or (source.url if source else row["url"]) or ""
            source_id = (
                canonical_iri(row["feed_id"] or "")
                or canonical_iri(link)
                or canonical_iri(_absolute(fetched))
                or f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'source:' + row['id'])}"
            )
            meta[row["id"]] = SourceView(
                id=source_id,
                title=_title(row["feed_title"] or name) or name,
                link=link,
                feed_url=_absolute(fetched),
                author=_title((source.attribution if source else None) or name),
            )
        return meta

    # --- kept for callers of the first version ---

    def render(self, info: FeedInfo) -> bytes:
        """The current Atom document of a feed."""
        return render_atom(self._pair(info, self.paging(info.key), 0)[0], self.config)

    def feed_urls(self) -> list[str]:
        return [self.url_of(feed_info(self.config, k).path) for k in sorted(self.store.feed_keys())]
