"""Publishing: a full rebuild against feedgen alone, and an incremental publish.

The store is filled through the real ingest path (poll.parse_and_store, the
poll path without HTTP). "feedgen alone" renders the very same documents from articles already in
memory: our Publisher.render with the store replaced by a dictionary, so the
difference between the two is what the store, the file writes and the index cost.
feedgen_seconds renders each feed's current document only; since archive pages
(RFC 5005) a full rebuild writes three times as much Atom, so
feedgen_every_page_seconds renders every Atom document the rebuild writes: the
same XML; feedgen_every_page_xml_seconds renders every page in both of the formats
feedgen writes (Atom and RSS 2.0; it has no JSON Feed). The full rebuilds start
with no cached entry fragments (cold, like the first publish of a store);
full_warm_seconds is a rebuild into a new folder with them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator.config.loader import Config, load_config
from aggregator.publish.atom import feed_generator, render_atom
from aggregator.publish.documents import Document
from aggregator.publish.publisher import Publisher, feed_info
from aggregator.run.poll import parse_and_store
from aggregator.store.records import FeedKey, StoredArticle
from aggregator.store.sqlite import SqliteStore
from bench.corpus import Corpus

INCREMENTAL_RUNS = 10


class Preloaded:
    """Just enough of SqliteStore for Publisher.render: each feed's current page from memory."""

    def __init__(self, store: SqliteStore, publisher: Publisher, keys: list[FeedKey]) -> None:
        self._next = {k: store.position_feed(k) for k in keys}
        self._pages: dict[tuple[FeedKey, int, int], list[StoredArticle]] = {}
        for key in keys:
            start, stop = publisher.paging(key).current
            self._pages[(key, start, stop)] = store.positioned_articles(key, start, stop)

    def position_feed(self, key: FeedKey) -> int:
        return self._next[key]

    def positioned_articles(self, key: FeedKey, start: int, stop: int) -> list[StoredArticle]:
        return self._pages[(key, start, stop)]


def _feedgen_rss(doc: Document, config: Config) -> bytes:
    """The document as feedgen writes RSS 2.0, from what render_atom gives it."""
    return bytes(feed_generator(doc, config).rss_str(pretty=True, encoding="UTF-8"))


def _feedgen_every_page(
    store: SqliteStore, config: Config, keys: list[FeedKey]
) -> tuple[float, float]:
    """feedgen rendering every document a full rebuild writes (the current ones and the
    RFC 5005 archive pages) as Atom, and as RSS 2.0: the seconds of each, each page's
    articles read before its clock starts (views, as render_atom takes them, counted
    with Atom)."""
    stub = Publisher(config, store)
    atom_seconds = rss_seconds = 0.0
    for key in keys:
        info = feed_info(config, key)
        paging = stub.paging(key)
        for number in range(paging.archived + 1):
            atom = stub._documents(info, paging, number)[0][1]
            start, stop = paging.page(number) if number else paging.current
            articles = store.positioned_articles(key, start, stop)
            started = time.perf_counter()
            doc = replace(atom, entries=stub.views(articles))
            render_atom(doc, config)
            middle = time.perf_counter()
            _feedgen_rss(doc, config)
            atom_seconds += middle - started
            rss_seconds += time.perf_counter() - middle
    return atom_seconds, rss_seconds


def _config(folder: Path, feeds: int, output: str, formats: list[str] | None = None) -> Config:
    lines = [
        "[settings]",
        f'database = "{folder / "publish.db"}"',
        f'output_dir = "{folder / output}"',
        'base_url = "http://127.0.0.1:8080"',
        "feed_entries = 50",
        'title = "三秦新闻聚合"',
    ]
    if formats:  # the output formats published (the default: all of them)
        lines.append(f"formats = {formats!r}".replace("'", '"'))
    for i in range(feeds):
        lines += [
            "[[sources]]",
            f'id = "s{i:05d}"',
            f'name = "第{i}版"',
            f'url = "http://127.0.0.1/feeds/{i:05d}.xml"',
            'category = "三秦都市报"',
            'tags = ["三秦都市报新闻"]',
            'share_code = { param = "infoCode" }',
        ]
    path = folder / "config" / "sources.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path)


def _fill(config: Config, store: SqliteStore, corpus: Corpus, now: datetime) -> None:
    for source, feed in zip(config.sources, corpus.feeds, strict=True):
        parse_and_store(source, store, corpus.render(feed), source.url, feed.content_type, now)


def measure(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    feeds, entries, runs = params["feeds"], params["entries"], params.get("runs", 3)
    formats = params.get("formats")  # None: the default, every format
    corpus = Corpus(
        feeds, entries, seed=params.get("seed", 20211224), markup=params.get("markup", "seed")
    )
    config = _config(folder, feeds, "out-0", formats)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources)
        _fill(config, store, corpus, now)
        full, alone, warm = [], [], []
        for run in range(runs):
            # Cold: every entry rendered afresh, as on the first publish of a store (the
            # fragments kept from the run before would make this a re-assembly only).
            store.clear_renders()
            publisher = Publisher(_config(folder, feeds, f"out-{run}", formats), store)
            started = time.perf_counter()
            written = publisher.publish()
            full.append(time.perf_counter() - started)

            keys = sorted(store.feed_keys())
            stub = Publisher(config, store)
            preloaded = Preloaded(store, stub, keys)
            stub._source_meta = stub._load_source_meta()
            stub.store = preloaded  # type: ignore[assignment]
            infos = [feed_info(config, k) for k in keys]
            started = time.perf_counter()
            for info in infos:
                stub.render(info)
            alone.append(time.perf_counter() - started)

        both = [_feedgen_every_page(store, config, keys) for _ in range(runs)]
        every_page = [atom for atom, _ in both]
        every_page_xml = [atom + rss for atom, rss in both]

        for run in range(runs):
            # Warm: the fragments are kept, the output folder is new (e.g. after deleting it).
            publisher = Publisher(_config(folder, feeds, f"warm-{run}", formats), store)
            started = time.perf_counter()
            publisher.publish()
            warm.append(time.perf_counter() - started)

        # A long-lived publisher, as the daemon's: ten publishes after one new entry
        # each (the first one of a new publisher loads its caches: it is in the list).
        incremental = []
        publisher = Publisher(_config(folder, feeds, f"out-{runs - 1}", formats), store)
        for _ in range(max(runs, INCREMENTAL_RUNS)):
            corpus.add_entry(corpus.feeds[0])
            source, feed = config.sources[0], corpus.feeds[0]
            body = corpus.render(feed)
            _, ingested = parse_and_store(source, store, body, source.url, feed.content_type, now)
            changed = ingested.changed_feeds
            started = time.perf_counter()
            publisher.publish(changed)
            incremental.append(time.perf_counter() - started)
    return {
        "files": len(written),
        "full_seconds": statistics.median(full),
        "full_warm_seconds": statistics.median(warm),
        "feedgen_seconds": statistics.median(alone),
        "feedgen_every_page_seconds": statistics.median(every_page),
        "feedgen_every_page_xml_seconds": statistics.median(every_page_xml),
        "incremental_seconds": statistics.median(incremental),
        "full_all": full,
        "full_warm_all": warm,
        "feedgen_all": alone,
        "feedgen_every_page_all": every_page,
        "feedgen_every_page_xml_all": every_page_xml,
        "incremental_all": incremental,
    }
