"""Full text for summary-only sources (`full_text` in a source's config): each new or
changed entry's article page fetched and its main content kept as the entry's content,
the source's own text kept as its summary.

Only what a poll is about to store comes here: entries the store has byte for byte
were skipped unread before (their raw digest); an entry the store holds from this
source as the source gives it now (the same link, title and text, kept as its summary)
keeps the article stored with it; and an article already extracted for the same entry
by this process is taken from its cache. None of them costs a request. A changed
entry's page is asked for conditionally when this process has its ETag and
Last-Modified: a 304 keeps the extraction made before.

Article URLs come from the source's content, so the fetcher refuses private address
space for them from the first request on, whatever the source's allow_private; the
per-host limit, size caps and deadline are the feeds'.
A failed fetch or extraction keeps the entry as the source gave it, and fails nothing
else: a poll's articles are fetched one after another, each within its deadline.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aggregator.config.loader import Source
from aggregator.errors import FetchError, ParseError
from aggregator.fetch.fetcher import Fetcher
from aggregator.models import EntryRecord, evolve
from aggregator.parse.article import read_article
from aggregator.parse.limits import ParseLimits
from aggregator.parse.sanitize import clean_html
from aggregator.store.records import StoredArticle

log = logging.getLogger("aggregator.fulltext")

CACHE_SIZE = 4096  # articles kept per process


@dataclass(frozen=True)
class CachedArticle:
    """An article page's extraction, and what it was made for."""

    entry: str  # entry_key of the entry it was extracted for
    etag: str | None
    last_modified: str | None
    content: str  # sanitized HTML; "" when extraction failed
    error: str = ""


class ArticleCache:
    """Extractions by article URL, the most recently used kept (thread-safe)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, CachedArticle] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> CachedArticle | None:
        with self._lock:
            found = self._items.get(url)
            if found is not None:
                self._items.move_to_end(url)
            return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def put(self, url: str, article: CachedArticle) -> None:
        with self._lock:
            self._items[url] = article
            self._items.move_to_end(url)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


PROCESS_CACHE = ArticleCache()


def entry_key(entry: EntryRecord) -> str:
    """What the source said of an entry: when it changes, its article is asked for again."""
    parts = (entry.link, entry.title, entry.summary, entry.content, str(entry.updated))
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


# The store's articles by code (Storage.articles_by_code).
StoredLookup = Callable[[Sequence[str]], dict[str, StoredArticle]]


def _nothing_stored(codes: Sequence[str]) -> dict[str, StoredArticle]:
    return {}


@dataclass
class FullText:
    """What full text needs: the poll's fetcher, the parse limits, the cache, and a way
    to read what the store holds."""

    fetcher: Fetcher
    limits: ParseLimits
    cache: ArticleCache = PROCESS_CACHE
    stored: StoredLookup = _nothing_stored

    def article(self, entry: EntryRecord, selector: str) -> CachedArticle:
        """The entry's article, from the cache or its page."""
        url = entry.link
        key = entry_key(entry)
        cached = self.cache.get(url)
        if cached is not None and cached.entry == key:
            return cached
        try:
            fetched = self.fetcher.fetch(
                url,
                etag=cached.etag if cached else None,
                last_modified=cached.last_modified if cached else None,
                untrusted=True,
            )
            if fetched.body is None and cached is not None:  # 304: the page is as it was
                found = CachedArticle(key, cached.etag, cached.last_modified, cached.content)
            else:
                content = read_article(
                    fetched.body or b"",
                    url=fetched.url,
                    content_type=fetched.content_type,
                    selector=selector,
                    limits=self.limits,
                )
                found = CachedArticle(key, fetched.etag, fetched.last_modified, content)
        except (FetchError, ParseError) as exc:
            found = CachedArticle(key, None, None, "", str(exc))
        self.cache.put(url, found)
        return found

    def apply(self, entries: Sequence[EntryRecord], source: Source) -> list[EntryRecord]:
        """The entries, each with its article as content where one was found."""
        if not source.full_text.enabled:
            return list(entries)
        stored = self.stored([e.code for e in entries if e.code])
        return [self._with_article(entry, source, stored.get(entry.code)) for entry in entries]

    def _with_article(
        self, entry: EntryRecord, source: Source, stored: StoredArticle | None
    ) -> EntryRecord:
        if not entry.link.startswith(("http://", "https://")):
            return entry
        own = entry.content or entry.summary  # the source's text becomes the summary
        summary = clean_html(own, self.limits.fields.summary) if own else ""
        if (
            stored is not None
            and stored.source_id == source.id
            and (stored.link, stored.title, stored.summary) == (entry.link, entry.title, summary)
            and stored.content != summary
        ):  # stored from this very entry, with its article: nothing to fetch
            return evolve(entry, content=stored.content, summary=summary)
        found = self.article(entry, source.full_text.selector)
        if not found.content:
            log.info("source %s: no full text for %s: %s", source.id, entry.link, found.error)
            return entry
        return evolve(entry, content=found.content, summary=summary)
