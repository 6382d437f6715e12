"""Republish the store as Atom 1.0 feeds (feedgen) under the output folder.

One feed per category, per tag, per source, and one of everything:
``all.xml``, ``category/<slug>.xml``, ``tag/<slug>.xml``, ``source/<id>.xml``,
plus ``index.html`` with autodiscovery links. Output is deterministic, so an
unchanged store rewrites nothing and ETags stay stable across restarts.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import PROJECT_URL, __version__
from aggregator.config import Config, Term
from aggregator.files import sync_dirs, write_if_changed
from aggregator.sanitize import strip_control
from aggregator.store import FeedKey, Store, StoredArticle

# Fixed namespace for uuid5 ids: an entry's id depends on its share code only.
ID_NAMESPACE = uuid.UUID("6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def feed_info(config: Config, key: FeedKey) -> FeedInfo:
    kind, name = key
    site = config.settings.title
    if kind == "all":
        return FeedInfo(key, "all.xml", site, f"All articles on {site}")
    if kind == "category":
        term = config.category_term(name)
        return FeedInfo(
            key,
            f"category/{term.slug}.xml",
            term.name,
            term.description or f"{site}: category {term.name}",
        )
    if kind == "tag":
        term = config.tag_term(name)
        return FeedInfo(
            key, f"tag/{term.slug}.xml", term.name, term.description or f"{site}: tag {term.name}"
        )
    source = config.source(name)
    title = source.name if source else name
    return FeedInfo(key, f"source/{name}.xml", title, f"{site}: articles from {title}")


# --- feedgen extensions: what feedgen 1.0 cannot write itself ------------------------


class _AtomSourceFeed(BaseExtension):  # type: ignore[misc]
    pass


class _AtomSourceEntry(BaseEntryExtension):  # type: ignore[misc]
    """Writes atom:source and enclosure links (feedgen drops their attributes)."""

    def __init__(self) -> None:
        self.source: dict[str, str] = {}
        self.enclosures: list[tuple[str, str, int]] = []

    def extend_atom(self, entry: Any) -> Any:
        # feedgen writes un-namespaced elements under a root carrying xmlns, so
        # ours must be un-namespaced too to land in the Atom namespace.
        for url, mime, length in self.enclosures:
            link = etree.SubElement(entry, "link", rel="enclosure", href=url)
            if mime:
                link.set("type", mime)
            if length:
                link.set("length", str(length))
        if self.source:
            source = etree.SubElement(entry, "source")
            etree.SubElement(source, "id").text = self.source["id"]
            etree.SubElement(source, "title").text = self.source["title"]
            if self.source.get("link"):
                etree.SubElement(source, "link", rel="alternate", href=self.source["link"])
        return entry


def _text(value: str) -> str:
    return strip_control(value)


class _Lookup:
    """Per-config memo of what publishing asks the config again and again: a term's
    slug (jieba + pinyin), a source by id, a feed's path and title, the index page."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sources = {s.id: s for s in config.sources}
        self.terms: dict[tuple[str, str], Term] = {}
        self.infos: dict[FeedKey, FeedInfo] = {}
        self.index: tuple[tuple[FeedKey, ...], bytes] | None = None

    def term(self, kind: str, name: str) -> Term:
        found = self.terms.get((kind, name))
        if found is None:
            lookup = self.config.category_term if kind == "category" else self.config.tag_term
            found = self.terms[(kind, name)] = lookup(name)
        return found

    def info(self, key: FeedKey) -> FeedInfo:
        found = self.infos.get(key)
        if found is None:
            found = self.infos[key] = feed_info(self.config, key)
        return found


class Publisher:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.output = config.settings.output_dir
        self._source_meta: dict[str, dict[str, str]] = {}
        self._memo = _Lookup(config)

    @property
    def _lookup(self) -> _Lookup:
        if self._memo.config is not self.config:  # the daemon swaps in a reloaded config
            self._memo = _Lookup(self.config)
        return self._memo

    def url_of(self, path: str) -> str:
        return f"{self.config.settings.base_url}/{path}"

    def publish(self, keys: Iterable[FeedKey] | None = None) -> list[Path]:
        """Regenerate the given feeds (all when None); returns the files rewritten."""
        all_keys = self.store.feed_keys()
        wanted = all_keys if keys is None else (set(keys) & all_keys) | {("all", "")}
        self._source_meta = self._load_source_meta()
        written = []
        for key in sorted(wanted):
            info = self._lookup.info(key)
            path = self.output / info.path
            if write_if_changed(path, self.render(info), sync_dir=False):
                written.append(path)
        index = self.output / "index.html"
        if write_if_changed(index, self._index(tuple(sorted(all_keys))), sync_dir=False):
            written.append(index)
        sync_dirs(written)  # one fsync per folder, not per file
        return written

    def _index(self, keys: tuple[FeedKey, ...]) -> bytes:
        """The index page, rendered again only when the set of feeds changed."""
        lookup = self._lookup
        if lookup.index is None or lookup.index[0] != keys:
            lookup.index = (keys, self.render_index(list(keys)))
        return lookup.index[1]

    def _load_source_meta(self) -> dict[str, dict[str, str]]:
        meta = {}
        sources = self._lookup.sources
        for source_id, name, url, feed_title, feed_link, feed_id in self.store.source_feed_rows():
            source = sources.get(source_id)
            link = feed_link or ""
            meta[source_id] = {
                "title": feed_title or (source.name if source else name) or source_id,
                "id": feed_id or link or (source.url if source else url),
                "link": link,
                "name": source.name if source else name,
            }
        return meta

    def render(self, info: FeedInfo) -> bytes:
        settings = self.config.settings
        articles = self.store.articles(info.key, settings.feed_entries)
        generator = FeedGenerator()
        generator.register_extension(
            "aggsource", _AtomSourceFeed, _AtomSourceEntry, atom=True, rss=False
        )
        generator.id(feed_id(info.key))
        generator.title(_text(info.title))
        generator.subtitle(_text(info.subtitle))
        generator.language(settings.language)
        generator.author({"name": settings.author})
        generator.link(href=self.url_of(info.path), rel="self", type="application/atom+xml")
        generator.link(href=settings.base_url + "/", rel="alternate", type="text/html")
        generator.generator("aggregator", __version__, PROJECT_URL)
        generator.updated(max((a.updated for a in articles), default=EPOCH))
        for article in articles:
            self._add_entry(generator, article)
        return bytes(generator.atom_str(pretty=True, encoding="UTF-8"))

    def _add_entry(self, generator: FeedGenerator, article: StoredArticle) -> None:
        entry = generator.add_entry(order="append")
        entry.id(entry_id(article.code))
        entry.title(_text(article.title) or article.link or article.code)
        if article.link:
            entry.link(href=article.link, rel="alternate", type="text/html")
        entry.published(article.published)
        entry.updated(article.updated)
        if article.author:
            entry.author({"name": _text(article.author)})
        if article.summary:
            entry.summary(_text(article.summary), type="html")
        entry.content(_text(article.content or article.summary or article.title), type="html")
        scheme = self.config.settings.base_url
        for name in article.entry_categories:
            term = self._lookup.term("category", name)
            entry.category(term=term.slug, label=term.name, scheme=f"{scheme}/category/")
        for name in article.tags:
            term = self._lookup.term("tag", name)
            entry.category(term=term.slug, label=term.name, scheme=f"{scheme}/tag/")
        extension = entry.aggsource
        extension.enclosures = [(e.url, e.type, e.length) for e in article.enclosures]
        meta = self._source_meta.get(article.source_id)
        if meta:
            extension.source = {"id": meta["id"], "title": meta["title"], "link": meta["link"]}

    def render_index(self, keys: list[FeedKey]) -> bytes:
        settings = self.config.settings
        infos = [self._lookup.info(key) for key in keys]
        heading = {"all": "All", "category": "Categories", "tag": "Tags", "source": "Sources"}
        links = "\n".join(
            f'<link rel="alternate" type="application/atom+xml" title="{html.escape(i.title)}" '
            f'href="{html.escape(self.url_of(i.path))}">'
            for i in infos
        )
        sections = []
        for kind in ("all", "category", "tag", "source"):
            items = [i for i in infos if i.key[0] == kind]
            if not items:
                continue
            rows = "\n".join(
                f'<li><a href="{html.escape(i.path)}">{html.escape(i.title)}</a>'
                f" <small>{html.escape(self.url_of(i.path))}</small></li>"
                for i in items
            )
            sections.append(f"<h2>{heading[kind]}</h2>\n<ul>\n{rows}\n</ul>")
        title = html.escape(settings.title)
        page = (
            f'<!DOCTYPE html>\n<html lang="{html.escape(settings.language)}">\n<head>\n'
            f'<meta charset="utf-8">\n<title>{title}</title>\n{links}\n</head>\n<body>\n'
            f"<h1>{title}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
        )
        return page.encode("utf-8")

    def feed_urls(self) -> list[str]:
        return [self.url_of(feed_info(self.config, k).path) for k in sorted(self.store.feed_keys())]
