"""Poll many sources at once, fast: bounded concurrency, unchanged work skipped.

The same pipeline as poll.poll_source (fetch, body hash, parse, share codes,
dedup, store, next poll), with three savings on top:

* a bounded number of polls in flight (threads: the work is mostly waiting on
  the network), the fetcher's per-host limit still holding;
* entries whose raw XML this source already delivered, byte for byte, are
  recognised by a digest before any sanitizing or date parsing and skipped
  (they would be "unchanged" anyway), so a changed feed with one new entry costs
  about one entry;
* optionally the CPU-heavy part (parse, normalise, share codes) runs in a
  process pool, so both cores work while the main process does I/O and SQLite.

A failing source records its error and never raises into the caller.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import random
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from time import monotonic
from typing import Any

from aggregator import fastparse
from aggregator.config import Source
from aggregator.dedup import Action, decide, entry_hash
from aggregator.errors import FetchError, ParseError
from aggregator.fetch import Fetcher
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.parse import _entry
from aggregator.poll import Clock, PollOutcome, _failed, _succeeded, extract, utc_now
from aggregator.schedule import PollFacts
from aggregator.sharecode import share_code
from aggregator.store import (
    FeedKey,
    IngestResult,
    Store,
    _json_enclosures,
    _json_list,
    iso,
)

log = logging.getLogger("aggregator.pollmany")


@dataclass(frozen=True)
class Prepared:
    """A parsed feed reduced to the entries that need storing, in feed order."""

    feed: ParsedFeed
    keys: tuple[str, ...]  # raw digest per entry of feed.entries ("" from feedparser)
    skipped: int  # entries recognised by their raw digest
    hashes: tuple[str, ...] = ()  # dedup.entry_hash per entry, computed here off the I/O side


def source_context(source: Source) -> bytes:
    """What besides the raw XML decides an entry's normalised form."""
    rule = source.share_code
    return f"{source.timezone}\x00{rule.param}\x00{rule.regex}".encode()


def prepare(
    source: Source,
    body: bytes,
    url: str,
    content_type: str,
    now: datetime,
    known: dict[str, str],
) -> Prepared:
    """Parse one fetched body; pure and picklable, so it can run in another process.

    known maps the raw digests this source delivered before to their share codes.
    """
    raw = fastparse.read(body, url=url, content_type=content_type)
    if raw is not None:
        try:
            return _prepare_fast(source, raw, url, now, known)
        except fastparse.Unsupported:
            pass  # an entry's markup the fast path cannot mirror
    # Not for the fast path: feedparser, every entry processed.
    feed = extract(source, body, url, content_type, now)
    hashes = tuple(entry_hash(e) for e in feed.entries)
    return Prepared(feed, ("",) * len(feed.entries), 0, hashes)


def _prepare_fast(
    source: Source, raw: fastparse.RawFeed, url: str, now: datetime, known: dict[str, str]
) -> Prepared:
    context = source_context(source)
    taken: set[str] = set()  # codes seen so far: the first entry per code wins
    entries: list[EntryRecord] = []
    keys: list[str] = []
    skipped = 0
    for item in raw.entries:
        key = hashlib.sha1(item.digest.encode() + context).hexdigest()
        code = known.get(key)
        if code is not None:
            taken.add(code)
            skipped += 1
            continue
        entry = fastparse.normalise(item, raw, source.timezone, now, _entry)
        code, rule = share_code(entry, source.share_code)
        if code in taken:
            continue
        taken.add(code)
        entries.append(replace(entry, code=code, code_rule=rule))
        keys.append(key)
    hashes = tuple(entry_hash(e) for e in entries)
    return Prepared(fastparse.feed_of(raw, tuple(entries), url), tuple(keys), skipped, hashes)


Preparer = Callable[[Source, bytes, str, str, datetime, dict[str, str]], Prepared]


def in_pool(pool: Executor) -> Preparer:
    """prepare() run by an executor (a process pool), waited for by the calling thread."""

    def run(
        source: Source,
        body: bytes,
        url: str,
        content_type: str,
        now: datetime,
        known: dict[str, str],
    ) -> Prepared:
        return pool.submit(prepare, source, body, url, content_type, now, known).result()

    return run


# --- storing ---------------------------------------------------------------------------


def _new_feeds(source: Source) -> set[FeedKey]:
    """The feeds a brand-new entry lands in: no query needed."""
    keys: set[FeedKey] = {("all", ""), ("category", source.category), ("source", source.id)}
    keys |= {("tag", tag) for tag in source.tags}
    return keys


def ingest(store: Store, source: Source, prepared: Prepared, now: datetime) -> IngestResult:
    """Store.ingest for a prepared feed, in one transaction with batched statements;
    also remembers each entry's raw digest so the next poll can skip it."""
    result = IngestResult(unchanged=prepared.skipped)
    entries = prepared.feed.entries
    stamp = iso(now)
    new_rows: list[list[Any]] = []
    links: list[list[Any]] = []
    refresh: list[list[Any]] = []
    touched: list[str] = []
    with store.transaction() as db:
        stored = store._stored(db, [e.code for e in entries])
        hashes = prepared.hashes or tuple(entry_hash(e) for e in entries)
        for entry, key, hashed in zip(entries, prepared.keys, hashes, strict=True):
            decision = decide(stored.get(entry.code), source.id, entry, hashed, now)
            if decision.action is Action.UNCHANGED:
                result.unchanged += 1
                if key:
                    refresh.append([key, entry.code, source.id])
                continue
            if decision.action is Action.NEW:
                new_rows.append(_entry_row(source, entry, decision.updated or now, now))
                result.new += 1
            elif decision.action is Action.UPDATE:
                store._update_entry(db, entry, decision.updated or now)
                result.updated += 1
                touched.append(entry.code)
            else:
                result.added_source += 1
                touched.append(entry.code)
            links.append([entry.code, source.id, entry.guid, hashed, stamp, stamp, key or None])
        conn = db.conn
        conn.executemany(
            """INSERT INTO entries (code, code_rule, guid, title, link, published, updated,
                 first_seen, author, summary, content, categories, enclosures, source_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            new_rows,
        )
        conn.executemany(
            """INSERT INTO entry_sources
                 (code, source_id, guid, entry_hash, first_seen, last_seen, raw_hash)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(code, source_id) DO UPDATE SET guid = excluded.guid,
                 entry_hash = excluded.entry_hash, last_seen = excluded.last_seen,
                 raw_hash = excluded.raw_hash""",
            links,
        )
        codes = [row[0] for row in links]
        conn.executemany(
            "INSERT OR IGNORE INTO entry_categories (code, name) VALUES (?, ?)",
            [(code, source.category) for code in codes],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO entry_tags (code, name) VALUES (?, ?)",
            [(code, tag) for code in codes for tag in source.tags],
        )
        conn.executemany(
            "UPDATE entry_sources SET raw_hash = ? WHERE code = ? AND source_id = ?", refresh
        )
        if new_rows:
            result.changed_feeds |= _new_feeds(source)
        for code in touched:
            result.changed_feeds |= store._feeds_of(db, code)
        feed = prepared.feed
        conn.execute(
            "UPDATE sources SET feed_title = ?, feed_link = ?, feed_id = ? WHERE id = ?",
            [feed.title, feed.link, feed.feed_id, source.id],
        )
    return result


def _entry_row(source: Source, entry: EntryRecord, updated: datetime, now: datetime) -> list[Any]:
    """The entries row Store._insert_entry writes, for executemany."""
    published = entry.published or entry.updated or now
    return [
        entry.code,
        entry.code_rule,
        entry.guid,
        entry.title,
        entry.link,
        iso(published),
        iso(max(updated, published)),
        iso(now),
        entry.author,
        entry.summary,
        entry.content,
        _json_list(entry.categories),
        _json_enclosures(entry.enclosures),
        source.id,
    ]


# --- one source, many sources ----------------------------------------------------------


def poll_one(
    source: Source,
    store: Store,
    fetcher: Fetcher,
    *,
    clock: Clock = utc_now,
    rand: Callable[[], float] = random.random,
    preparer: Preparer = prepare,
) -> PollOutcome:
    """Poll one source end to end (poll.poll_source with the savings above)."""
    started = clock()
    tick = monotonic()
    state = store.source_state(source.id)
    url = state.moved_to or source.url
    try:
        fetched = fetcher.fetch(
            url,
            etag=state.etag,
            last_modified=state.last_modified,
            headers=source.headers,
            allow_private=source.allow_private,
            now=started,
        )
    except FetchError as exc:
        return _failed(source, store, state.error_count, exc, started, rand())
    validators = {
        "etag": fetched.etag or state.etag,
        "last_modified": fetched.last_modified or state.last_modified,
    }
    if fetched.moved_to:
        validators["moved_to"] = fetched.moved_to
        log.info("source %s moved permanently to %s", source.id, fetched.moved_to)
    facts = PollFacts(source.interval, succeeded=True, max_age=fetched.max_age)
    if fetched.body is None:
        return _succeeded(source, store, "not_modified", validators, facts, started, rand(), 304)
    body_hash = hashlib.sha1(fetched.body).hexdigest()
    if body_hash == state.body_hash:
        # Same bytes as last time although the server sent no validators.
        return _succeeded(
            source, store, "unchanged", validators, facts, started, rand(), fetched.status
        )
    try:
        known = store.raw_digests(source.id)
        prepared = preparer(source, fetched.body, fetched.url, fetched.content_type, started, known)
        ingested = ingest(store, source, prepared, clock())
    except ParseError as exc:
        return _failed(source, store, state.error_count, exc, started, rand(), fetched.status)
    except Exception as exc:  # a bug or a storage fault must not stop other sources
        log.exception("source %s: unexpected error", source.id)
        internal = ParseError(f"internal error {type(exc).__name__}: {exc}")
        return _failed(source, store, state.error_count, internal, started, rand(), fetched.status)
    facts = replace(facts, ttl_minutes=prepared.feed.ttl_minutes)
    outcome = _succeeded(
        source,
        store,
        "ok",
        {**validators, "body_hash": body_hash},
        facts,
        started,
        rand(),
        fetched.status,
    )
    outcome.new, outcome.updated = ingested.new, ingested.updated
    outcome.added_source = ingested.added_source
    outcome.changed_feeds = ingested.changed_feeds
    outcome.seconds = monotonic() - tick
    if ingested.changed:
        log.info(
            "source %s: %d new, %d updated, %d also here, %d unchanged",
            source.id,
            ingested.new,
            ingested.updated,
            ingested.added_source,
            ingested.unchanged,
        )
    return outcome


def process_pool(processes: int) -> ProcessPoolExecutor:
    """A pool for prepare(); forkserver, because forking a threaded process is unsafe."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("forkserver"))


def poll_many(
    sources: Sequence[Source],
    store: Store,
    fetcher: Fetcher,
    *,
    workers: int = 8,
    processes: int = 0,
    clock: Clock = utc_now,
    rand: Callable[[], float] = random.random,
    on_outcome: Callable[[PollOutcome], None] | None = None,
) -> list[PollOutcome]:
    """Poll every source with at most `workers` polls in flight; outcomes in source order.

    processes > 1 parses in that many worker processes (worth it on a multi-core
    machine when many feeds change at once, e.g. a first poll).
    """
    if not sources:
        return []
    pool = process_pool(processes) if processes > 1 else None
    preparer = in_pool(pool) if pool is not None else prepare
    try:
        with ThreadPoolExecutor(max(1, min(workers, len(sources))), "poll") as threads:
            futures = [
                threads.submit(
                    poll_one, source, store, fetcher, clock=clock, rand=rand, preparer=preparer
                )
                for source in sources
            ]
            outcomes = []
            for future in futures:
                outcome = future.result()
                if on_outcome is not None:
                    on_outcome(outcome)
                outcomes.append(outcome)
    finally:
        if pool is not None:
            pool.shutdown()
    return outcomes
