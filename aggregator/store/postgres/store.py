"""PostgreSQL storage through psycopg 3: the SQLite store's behaviour, shared by nodes.

Every write is one transaction (READ COMMITTED). What several nodes may write at once
is ordered by row locks, not by one writer as in SQLite:
- an ingest locks the stored entries it is about to decide on (FOR UPDATE, in code
  order, so two ingests never wait on each other in a circle), then decides on what
  they hold now; a new entry that another node stored meanwhile makes its INSERT fail,
  and the whole ingest runs again, now finding it stored (one entry, both sources);
- positions of a feed are given under an advisory lock per feed;
- rendered fragments are read and kept while their entries are share-locked.
Conflicts PostgreSQL reports (unique violation, deadlock, serialization failure) are
retried a few times; anything else surfaces as StoreError.
One connection per store, shared by threads behind a lock (as the SQLite store).
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from aggregator.config.loader import Source
from aggregator.errors import BatchFailed, StoreError
from aggregator.identity.dedup import (
    Action,
    Decision,
    SourceCopies,
    StoredEntry,
    decide,
    entry_hash,
    first_per_code,
    in_current_hashes,
    is_current_hash,
    resolve_codes,
)
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.store.columns import (
    FEED_MEMBERS,
    RECORD,
    STATE_COLUMNS,
    NewEntryRows,
    article_of,
    distinct_sql,
    history_start,
    json_enclosures,
    json_list,
    poll_rows,
    recent_polls,
    source_state,
    utc,
)
from aggregator.store.postgres.schema import MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION
from aggregator.store.records import (
    RECENT_POLLS,
    Candidate,
    FeedKey,
    IngestResult,
    PollDay,
    PollRecord,
    PositionedRender,
    SourceMeta,
    SourceState,
    StatusRows,
    StoredArticle,
    feeds_of_new,
    from_iso,
    iso,
)

T = TypeVar("T")

# What PostgreSQL answers when two nodes' transactions met: the loser runs again.
RETRIED = (pgerrors.UniqueViolation, pgerrors.DeadlockDetected, pgerrors.SerializationFailure)
ATTEMPTS = 8


@dataclass
class _Batch:
    cursor: psycopg.Cursor[Any]
    failed: bool = False


# Connections a store keeps at most: the short transactions of a node's poll threads,
# its publisher and its sweep share them, none waiting for another's transaction.
POOL_SIZE = 8


def connect(url: str, *, timeout: float = 10.0) -> psycopg.Connection[Any]:
    """A connection in autocommit mode: transactions are opened explicitly."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to database {redacted(url)}: {exc}") from None
    _quiet(conn)
    return conn


def _quiet(conn: psycopg.Connection[Any]) -> None:
    conn.add_notice_handler(lambda _diagnostic: None)  # "relation exists, skipping", ...


def _pool(url: str, timeout: float) -> ConnectionPool[psycopg.Connection[Any]]:
    """Up to POOL_SIZE connections, opened as they are needed (in autocommit mode, as
    connect's); a broken one is replaced when it is given back."""
    return ConnectionPool(
        url,
        min_size=1,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
        configure=_quiet,
        timeout=timeout,
        open=True,
        name="aggregator-store",
    )


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    return f"{scheme}//{credentials.split(':', 1)[0]}:***@{tail}"


class PostgresStore:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._closed = False
        self._timeout = timeout
        self._local = threading.local()  # the batch under way in this thread, if any
        self._keys_seen: tuple[int, frozenset[FeedKey]] | None = None
        self._pruned_day: str | None = None
        self.node: str | None = None  # see set_node
        # The first connection is made at once, to fail fast and clearly where the
        # server cannot be reached, and upgrades the schema; the pool takes over after.
        with connect(url, timeout=timeout) as conn:
            try:
                self._migrate(conn)
                row = conn.execute("SELECT 1 FROM legacy_codes LIMIT 1").fetchone()
                self._has_legacy_codes = row is not None
            except psycopg.Error as exc:
                raise StoreError(f"cannot use database {redacted(url)}: {exc}") from None
        self._pool = _pool(url, timeout)

    @property
    def database(self) -> str:
        return self.url

    def close(self) -> None:
        self._closed = True
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ---

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool, for this thread until the block ends."""
        if self._closed:
            raise StoreError(f"the store {redacted(self.url)} is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(f"cannot connect to database {redacted(self.url)}: {exc}") from None

    @contextmanager
    def _attempt(self) -> Iterator[psycopg.Cursor[Any]]:
        """One write transaction (or a part of this thread's batch under way)."""
        batch: _Batch | None = getattr(self._local, "batch", None)
        if batch is not None:
            try:
                yield batch.cursor
            except BaseException:
                batch.failed = True
                raise
            return
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield cursor

    def _write(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """Run work in one transaction, again if it met another node's (RETRIED); in a
        batch, once (the batch fails whole, see batch)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._attempt() as cursor:
                    return work(cursor)
            except RETRIED as exc:
                if getattr(self._local, "batch", None) is not None or attempt == ATTEMPTS:
                    raise StoreError(f"database conflict, {attempt} attempts: {exc}") from None
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
            except psycopg.Error as exc:
                raise StoreError(f"database error: {exc}") from None
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            with self._connection() as conn:
                return work(conn)
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from None

    def can_write_now(self) -> bool:
        """Always: writers wait only on the rows they share (row locks), not on a lock
        over the whole database."""
        return True

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Nothing to do alongside: the server keeps its own log (autovacuum and
        checkpoints are its business)."""
        yield

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several writes committed as one transaction, all or nothing: if any of them
        fails, even one whose caller went on, the whole batch is rolled back and
        BatchFailed raised, for the caller to do each alone."""
        if getattr(self._local, "batch", None) is not None:
            raise StoreError("batches do not nest")
        failed = False
        try:
            with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
                self._local.batch = batch = _Batch(cursor)
                try:
                    yield
                finally:
                    self._local.batch = None
                failed = batch.failed
                if failed:
                    raise psycopg.Rollback
        except psycopg.Error as exc:
            raise BatchFailed(f"the batch could not commit: {exc}") from None
        if failed:
            raise BatchFailed("a transaction in the batch failed")

    # --- schema ---

    @property
    def schema_version(self) -> int:
        return self._read(lambda conn: _schema_version(conn))

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            version = _schema_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {redacted(self.url)} has schema {version}, newer than this "
                    f"program's {SCHEMA_VERSION}: upgrade aggregator"
                )
            if version == SCHEMA_VERSION:
                return
            conn.execute("CREATE TABLE IF NOT EXISTS store_schema (version INTEGER NOT NULL)")
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement.encode())
            conn.execute("DELETE FROM store_schema")
            conn.execute("INSERT INTO store_schema VALUES (%s)", [SCHEMA_VERSION])

    # --- sources ---

    def sync_sources(self, sources: Iterable[Source]) -> None:
        """Mirror the config's view of each source, keeping its fetch state."""
        rows = sorted((s.id, s.name, s.url, s.category) for s in sources)

        def work(cur: psycopg.Cursor[Any]) -> None:
            cur.executemany(
                """INSERT INTO sources (id, name, url, category) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                     category = excluded.category,
                     moved_to = CASE WHEN sources.url = excluded.url THEN sources.moved_to END,
                     etag = CASE WHEN sources.url = excluded.url THEN sources.etag END,
                     last_modified = CASE WHEN sources.url = excluded.url
                                     THEN sources.last_modified END,
                     disabled_reason = CASE WHEN sources.url = excluded.url
                                       THEN sources.disabled_reason END,
                     retry_not_before = CASE WHEN sources.url = excluded.url
                                        THEN sources.retry_not_before END,
                     url = excluded.url
                   WHERE (sources.name, sources.url, sources.category)
                     IS DISTINCT FROM (excluded.name, excluded.url, excluded.category)""",
                rows,
            )

        self._write(work)

    def enable_sources(self, source_ids: Sequence[str]) -> list[str]:
        """Lift the store's stop (410 Gone) from these sources and make them due now;
        returns the ones that were stopped."""

        def work(cur: psycopg.Cursor[Any]) -> list[str]:
            cur.execute(
                """UPDATE sources SET disabled_reason = NULL, next_poll_at = NULL
                   WHERE id = ANY(%s) AND disabled_reason IS NOT NULL RETURNING id""",
                [list(source_ids)],
            )
            return sorted(source_id for (source_id,) in cur.fetchall())

        return self._write(work)

    def source_state(self, source_id: str) -> SourceState:
        return self.source_states([source_id])[source_id]

    def source_states(self, source_ids: Sequence[str]) -> dict[str, SourceState]:
        states = {source_id: SourceState(source_id) for source_id in source_ids}
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {STATE_COLUMNS} FROM sources WHERE id = ANY(%s)", [list(source_ids)]
            ).fetchall()
        )
        states.update((row[0], source_state(row)) for row in rows)
        return states

    def never_parsed(self, source_ids: Sequence[str]) -> int:
        """How many of these sources have no stored body yet (never parsed, or new)."""
        row = self._read(
            lambda conn: conn.execute(
                "SELECT count(*) FROM sources WHERE id = ANY(%s) AND body_hash IS NOT NULL",
                [list(source_ids)],
            ).fetchone()
        )
        return len(source_ids) - int(row[0] if row else 0)

    def source_rows(self) -> list[dict[str, Any]]:
        return self._dicts(
            """SELECT s.*, (SELECT count(*) FROM entry_sources es WHERE es.source_id = s.id)
                 AS entry_count
               FROM sources s ORDER BY s.id"""
        )

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        def work(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(sql, params).fetchall()

        return self._read(work)

    def record_poll(self, source_id: str, record: PollRecord) -> None:
        self.record_polls([(source_id, record)])

    def record_polls(self, polls: Sequence[tuple[str, PollRecord]]) -> None:
        """Store many polls' outcomes in one transaction (see the SQLite store's
        record_polls): one statement per run of polls that set the same columns."""
        prepared = poll_rows(polls)
        runs, failed, day = prepared.runs, prepared.failed, prepared.day

        def work(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(
                "INSERT INTO sources (id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                [sorted({i for i, _ in polls})],
            )
            for names, rows in runs:
                assignments = ", ".join(f"{name} = %({name})s" for name in names)
                if "last_poll_at" in names:
                    assignments += f", recent_polls = {_APPEND_POLL}"
                cur.executemany(f"UPDATE sources SET {assignments} WHERE id = %(id)s", rows)
            cur.executemany(
                """INSERT INTO poll_days (source_id, day, failures) VALUES (%s, %s, 1)
                   ON CONFLICT (source_id, day) DO UPDATE
                   SET failures = poll_days.failures + 1""",
                failed,
            )
            if day and day != self._pruned_day:
                cur.execute("DELETE FROM poll_days WHERE day < %s", [history_start(day)])
                self._pruned_day = day

        self._write(work)

    def prune_history(self, now: datetime, source_ids: Iterable[str]) -> None:
        kept = sorted(set(source_ids))

        def work(cur: psycopg.Cursor[Any]) -> None:
            cur.execute("DELETE FROM poll_days WHERE day < %s", [history_start(iso(now)[:10])])
            cur.execute("DELETE FROM poll_days WHERE NOT (source_id = ANY(%s))", [kept])
            cur.execute(
                """UPDATE sources SET recent_polls = NULL WHERE recent_polls IS NOT NULL
                   AND NOT (id = ANY(%s))""",
                [kept],
            )

        self._write(work)

    def status_rows(
        self,
        since: datetime,
        history_of: Callable[[list[dict[str, Any]]], Iterable[str]] | None = None,
    ) -> StatusRows:
        """Everything the status report shows, read in one snapshot (a read-only
        REPEATABLE READ transaction)."""

        def work(conn: psycopg.Connection[Any]) -> StatusRows:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                counts = {
                    r["source_id"]: r["n"]
                    for r in cur.execute(
                        "SELECT source_id, count(*) AS n FROM entry_sources GROUP BY source_id"
                    ).fetchall()
                }
                sources = []
                kept: dict[str, str | None] = {}
                for source in cur.execute("SELECT * FROM sources ORDER BY id").fetchall():
                    kept[source["id"]] = source.pop("recent_polls")
                    source["entry_count"] = counts.get(source["id"], 0)
                    sources.append(source)
                chosen = list(kept) if history_of is None else list(history_of(sources))
                recent = [poll for i in chosen for poll in recent_polls(i, kept.get(i))]
                days = [
                    PollDay(r["source_id"], r["day"], r["failures"], r["new_entries"])
                    for r in cur.execute(
                        """SELECT source_id, day, failures, new_entries FROM poll_days
                           WHERE day >= %s AND source_id = ANY(%s)
                           ORDER BY source_id, day""",
                        [iso(since)[:10], chosen],
                    ).fetchall()
                ]
                total = cur.execute("SELECT count(*) AS n FROM entries").fetchone()
                entries = int(total["n"]) if total else 0
            return StatusRows(sources, days, recent, entries, frozenset(chosen))

        return self._read(work)

    # --- entries ---

    def known_digests(self, source_id: str) -> dict[str, str]:
        rows = self._read(
            lambda conn: conn.execute(
                """SELECT raw_digest, code FROM entry_sources
                   WHERE source_id = %s AND raw_digest IS NOT NULL""",
                [source_id],
            ).fetchall()
        )
        return dict(rows)

    def _stored(self, cur: psycopg.Cursor[Any], codes: Iterable[str]) -> dict[str, StoredEntry]:
        """The stored entries under these codes, locked until the transaction ends (in
        code order: two ingests never wait on each other in a circle)."""
        wanted = sorted(set(codes))
        if not wanted:
            return {}
        cur.execute(
            """SELECT code FROM entries WHERE code = ANY(%s) ORDER BY code FOR UPDATE""",
            [wanted],
        )
        locked = [code for (code,) in cur.fetchall()]
        if not locked:
            return {}
        cur.execute(
            """SELECT e.code, e.updated, e.published, e.source_id, es.source_id, es.entry_hash
               FROM entries e LEFT JOIN entry_sources es ON es.code = e.code
               WHERE e.code = ANY(%s)""",
            [locked],
        )
        found: dict[str, StoredEntry] = {}
        for code, updated, published, shown_by, source_id, hashed in cur.fetchall():
            stored = found.get(code)
            if stored is None:
                stored = found[code] = StoredEntry(
                    code,
                    from_iso(updated) or datetime.now(UTC),
                    published=from_iso(published),
                    source_id=shown_by,
                )
            if source_id is not None:
                stored.source_hashes[source_id] = hashed
        return found

    def _resolve(
        self,
        cur: psycopg.Cursor[Any],
        source_id: str,
        entries: list[EntryRecord],
        stored: dict[str, StoredEntry],
    ) -> tuple[list[EntryRecord], set[str]]:
        """The entries under the codes they are stored as (dedup.resolve_codes); see the
        SQLite store's _resolve."""
        unknown = [e for e in entries if e.code not in stored and (e.legacy_code or e.fingerprint)]
        if not unknown:
            return entries, set()
        legacy: dict[str, str | None] = {}
        recheck: set[str] = set()
        if self._has_legacy_codes:
            codes = sorted({e.legacy_code for e in unknown if e.legacy_code})
            cur.execute(
                """SELECT l.code, es.entry_hash, l.recheck FROM legacy_codes l
                   LEFT JOIN entry_sources es ON es.code = l.code AND es.source_id = l.source_id
                   WHERE l.source_id = %s AND l.code = ANY(%s)""",
                [source_id, codes],
            )
            for code, hashed, flagged in cur.fetchall():
                legacy[code] = hashed
                if flagged:
                    recheck.add(code)
        prints = sorted({e.fingerprint for e in unknown if e.fingerprint})
        cur.execute(
            """SELECT fingerprint, min(code) FROM entry_sources
               WHERE source_id = %s AND fingerprint = ANY(%s) GROUP BY fingerprint""",
            [source_id, prints],
        )
        copies = SourceCopies(legacy, dict(cur.fetchall()))
        resolved = resolve_codes(entries, stored.keys(), copies)
        moved = [r.code for r, e in zip(resolved, entries, strict=True) if r.code != e.code]
        stored.update(self._stored(cur, [c for c in moved if c not in stored]))
        return resolved, recheck & set(moved)

    def _shows_copy(self, cur: psycopg.Cursor[Any], entry: EntryRecord) -> bool:
        cur.execute(
            """SELECT title, link, author, summary, content, categories, enclosures
               FROM entries WHERE code = %s""",
            [entry.code],
        )
        row = cur.fetchone()
        return row is not None and tuple(row) == (
            entry.title,
            entry.link,
            entry.author,
            entry.summary,
            entry.content,
            json_list(entry.categories),
            json_enclosures(entry.enclosures),
        )

    def ingest(
        self, source: Source, feed: ParsedFeed, entries: list[EntryRecord], now: datetime
    ) -> IngestResult:
        """Apply one poll's entries in one transaction; returns what changed."""
        return self._write(lambda cur: self._ingest(cur, source, feed, entries, now))

    def _ingest(
        self,
        cur: psycopg.Cursor[Any],
        source: Source,
        feed: ParsedFeed,
        entries: list[EntryRecord],
        now: datetime,
    ) -> IngestResult:
        result = IngestResult()
        stored = self._stored(cur, [e.code for e in entries])
        entries, recheck = self._resolve(cur, source.id, entries, stored)
        unique = first_per_code(entries)
        cur.execute(
            "SELECT code FROM tombstones WHERE code = ANY(%s)", [sorted({e.code for e in unique})]
        )
        removed = {code for (code,) in cur.fetchall()}
        if removed:
            result.tombstoned = len(removed)
            unique = [e for e in unique if e.code not in removed]
        digests_to_keep: list[tuple[str, str, str]] = []
        hashes_to_renew: list[tuple[str, str, str]] = []
        new = _NewEntries()
        joined: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
        for entry in unique:
            known = stored.get(entry.code)
            hashed = "" if known is None else entry_hash(entry)
            if known is not None:
                known = in_current_hashes(known, entry, hashed)
                if entry.code in recheck and not self._shows_copy(cur, entry):
                    known = replace(known, source_hashes={**known.source_hashes, source.id: ""})
            decision = decide(known, source.id, entry, hashed, now)
            if decision.action is Action.UNCHANGED:
                result.unchanged += 1
                if entry.raw_digest:
                    digests_to_keep.append((entry.raw_digest, entry.code, source.id))
                if not is_current_hash(stored[entry.code].source_hashes[source.id]):
                    hashes_to_renew.append((hashed, entry.code, source.id))
                continue
            if decision.action is Action.NEW:
                new.add(source, entry, decision, now)
                result.new += 1
                extras = (entry.extra_categories, entry.extra_tags)
                if extras not in joined:
                    joined.add(extras)
                    result.changed_feeds |= feeds_of_new(source, entry)
                continue
            assert known is not None
            first_copy = source.id not in known.source_hashes
            if decision.action in (Action.UPDATE, Action.SWITCH):
                _show(cur, source, entry, decision)
            if decision.action is Action.ADD_SOURCE or (
                first_copy and decision.action is Action.SWITCH
            ):
                result.added_source += 1
            elif decision.action is not Action.OTHER_COPY:
                result.updated += 1
            _link_source(cur, source, entry, hashed, now)
            if decision.action is not Action.OTHER_COPY:
                result.changed_feeds |= feeds_holding(cur, [entry.code])
        new.write(cur)
        if result.new + result.added_source:
            cur.execute(
                """INSERT INTO poll_days (source_id, day, new_entries) VALUES (%s, %s, %s)
                   ON CONFLICT (source_id, day) DO UPDATE SET
                     new_entries = poll_days.new_entries + excluded.new_entries""",
                [source.id, iso(now)[:10], result.new + result.added_source],
            )
        if recheck:
            cur.executemany(
                "UPDATE legacy_codes SET recheck = 0 WHERE code = %s AND source_id = %s",
                [(code, source.id) for code in sorted(recheck)],
            )
        cur.executemany(
            """UPDATE entry_sources SET raw_digest = %s
               WHERE code = %s AND source_id = %s AND raw_digest IS DISTINCT FROM %s""",
            [(digest, code, sid, digest) for digest, code, sid in digests_to_keep],
        )
        cur.executemany(
            "UPDATE entry_sources SET entry_hash = %s WHERE code = %s AND source_id = %s",
            hashes_to_renew,
        )
        cur.execute("SELECT feed_title, feed_link, feed_id FROM sources WHERE id = %s", [source.id])
        shown_before = cur.fetchone()
        cur.execute(
            """INSERT INTO sources (id, name, url, category, feed_title, feed_link, feed_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (id) DO UPDATE SET feed_title = excluded.feed_title,
                 feed_link = excluded.feed_link, feed_id = excluded.feed_id
               WHERE (sources.feed_title, sources.feed_link, sources.feed_id) IS DISTINCT FROM
                 (excluded.feed_title, excluded.feed_link, excluded.feed_id)""",
            [
                source.id,
                source.name,
                source.url,
                source.category,
                feed.title,
                feed.link,
                feed.feed_id,
            ],
        )
        renamed = shown_before and tuple(shown_before) != (feed.title, feed.link, feed.feed_id)
        if renamed and shown_before is not None and shown_before[0] is not None:
            cur.execute("SELECT code FROM entries WHERE source_id = %s", [source.id])
            result.changed_feeds |= feeds_holding(cur, [c for (c,) in cur.fetchall()])
        mark_unpublished(cur, result.changed_feeds)
        return result

    def import_articles(
        self, articles: Iterable[StoredArticle], now: datetime, code_rule: str = "import"
    ) -> tuple[int, int]:
        """Store articles read from elsewhere (e.g. posts), in one transaction; returns
        (imported, skipped): a code already stored is left as it is."""
        given = list(articles)

        def work(cur: psycopg.Cursor[Any]) -> tuple[int, int]:
            imported: list[str] = []
            skipped = 0
            for article in given:
                cur.execute("SELECT 1 FROM entries WHERE code = %s", [article.code])
                if cur.fetchone():
                    skipped += 1
                    continue
                cur.execute(
                    """INSERT INTO entries (code, code_rule, guid, title, link, published,
                         updated, first_seen, author, summary, content, categories,
                         enclosures, source_id)
                       VALUES (%s, %s, '', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        article.code,
                        code_rule,
                        article.title,
                        article.link,
                        iso(article.published),
                        iso(max(article.updated, article.published)),
                        iso(now),
                        article.author,
                        article.summary,
                        article.content,
                        json_list(article.categories),
                        json_enclosures(article.enclosures),
                        article.source_id,
                    ],
                )
                links = []
                if article.source_id:
                    cur.execute(
                        """INSERT INTO entry_sources (code, source_id, guid, entry_hash,
                             first_seen, last_seen) VALUES (%s, %s, '', %s, %s, %s)""",
                        [article.code, article.source_id, code_rule, iso(now), iso(now)],
                    )
                    links = [(article.code, article.source_id)]
                categories = [(article.code, name) for name in article.entry_categories]
                tags = [(article.code, name) for name in article.tags]
                _insert_names(cur, "entry_categories", categories)
                _insert_names(cur, "entry_tags", tags)
                _queue_members(cur, [article.code], links, categories, tags)
                imported.append(article.code)
            mark_unpublished(cur, feeds_holding(cur, imported))
            return len(imported), skipped

        return self._write(work)

    # --- reading for publishing ---

    def version(self, what: str) -> int:
        row = self._read(
            lambda conn: conn.execute(
                "SELECT version FROM store_versions WHERE what = %s", [what]
            ).fetchone()
        )
        return int(row[0]) if row else 0

    def feed_keys(self) -> set[FeedKey]:
        """Every feed that has at least one entry (see the SQLite store's feed_keys)."""
        version = self.version("feed_keys")
        if self._keys_seen is None or self._keys_seen[0] != version:
            self._keys_seen = (version, self._all_feed_keys())
        rows = self._read(
            lambda conn: conn.execute(
                """SELECT kind, name FROM (SELECT DISTINCT kind, name FROM feed_pending) k
                   WHERE EXISTS (SELECT 1 FROM feed_pending q JOIN entries e ON e.code = q.code
                                 WHERE q.kind = k.kind AND q.name = k.name)"""
            ).fetchall()
        )
        return {(str(kind), str(name)) for kind, name in rows} | self._keys_seen[1]

    def _all_feed_keys(self) -> frozenset[FeedKey]:
        keys: set[FeedKey] = {("all", "")}
        for kind, table, column in (
            ("category", "entry_categories", "name"),
            ("tag", "entry_tags", "name"),
            ("source", "entry_sources", "source_id"),
        ):
            keys.update((kind, name) for name in self._distinct(table, column))
        return frozenset(keys)

    def _distinct(self, table: str, column: str) -> list[str]:
        """DISTINCT column by hopping along its index (columns.distinct_sql)."""
        rows = self._read(lambda conn: conn.execute(distinct_sql(table, column)).fetchall())
        return [value for (value,) in rows]

    def articles(self, key: FeedKey, limit: int) -> list[StoredArticle]:
        """The newest entries of one feed, newest first, ties broken by code."""
        kind, name = key
        if kind == "all":
            where, params = "", []
        else:
            table, column = FEED_MEMBERS[kind]
            where = f"WHERE e.code IN (SELECT code FROM {table} WHERE {column} = %s)"
            params = [name]
        rows = self._dicts(
            f"""SELECT {_ARTICLE_COLUMNS} FROM entries e {where}
                ORDER BY e.published DESC, e.code LIMIT %s""",
            [*params, limit],
        )
        return [article_of(row) for row in rows]

    # --- feed positions (stable archive pages) ---

    def position_feed(self, key: FeedKey) -> int:
        """Number the feed's entries that have no position yet, oldest first; returns
        the next free position. Positions never change once given."""
        kind, name = key
        pending = self._read(
            lambda conn: conn.execute(
                "SELECT 1 FROM feed_pending WHERE kind = %s AND name = %s LIMIT 1", [kind, name]
            ).fetchone()
        )
        if pending is None:
            return self._next_position(key)

        def work(cur: psycopg.Cursor[Any]) -> int:
            # One node numbers a feed at a time; the others then find nothing queued.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_feed_lock(key)])
            cur.execute(
                """SELECT e.code FROM feed_pending q JOIN entries e ON e.code = q.code
                   WHERE q.kind = %(kind)s AND q.name = %(name)s AND NOT EXISTS (
                     SELECT 1 FROM feed_positions p
                     WHERE p.kind = %(kind)s AND p.name = %(name)s AND p.code = q.code)
                   ORDER BY e.published, e.code""",
                {"kind": kind, "name": name},
            )
            codes = [code for (code,) in cur.fetchall()]
            cur.execute(
                """SELECT coalesce(max(seq) + 1, 0) FROM feed_positions
                   WHERE kind = %s AND name = %s""",
                [kind, name],
            )
            start = int(cur.fetchone()[0])  # type: ignore[index]
            cur.executemany(
                "INSERT INTO feed_positions (kind, name, code, seq) VALUES (%s, %s, %s, %s)",
                [(kind, name, code, start + i) for i, code in enumerate(codes)],
            )
            cur.execute("DELETE FROM feed_pending WHERE kind = %s AND name = %s", [kind, name])
            if codes and start == 0:
                cur.execute(
                    "UPDATE store_versions SET version = version + 1 WHERE what = 'feed_keys'"
                )
            return start + len(codes)

        return self._write(work)

    def _next_position(self, key: FeedKey) -> int:
        row = self._read(
            lambda conn: conn.execute(
                """SELECT coalesce(max(seq) + 1, 0) FROM feed_positions
                   WHERE kind = %s AND name = %s""",
                list(key),
            ).fetchone()
        )
        return int(row[0]) if row else 0

    def positioned_articles(self, key: FeedKey, start: int, stop: int) -> list[StoredArticle]:
        rows = self._dicts(
            f"""SELECT {_ARTICLE_COLUMNS}
               FROM feed_positions p JOIN entries e ON e.code = p.code
               WHERE p.kind = %s AND p.name = %s AND p.seq >= %s AND p.seq < %s
               ORDER BY p.seq DESC""",
            [*key, start, stop],
        )
        return [article_of(row) for row in rows]

    def source_meta_rows(self) -> list[SourceMeta]:
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {', '.join(SourceMeta._fields)} FROM sources ORDER BY id"
            ).fetchall()
        )
        return [SourceMeta(*row) for row in rows]

    def positioned_renders(self, key: FeedKey, start: int, stop: int) -> list[PositionedRender]:
        rows = self._read(
            lambda conn: conn.execute(
                """SELECT e.code, e.updated, e.source_id, e.content, r.pack
                   FROM feed_positions p
                   JOIN entries e ON e.code = p.code
                   LEFT JOIN rendered_entries r ON r.code = e.code
                   WHERE p.kind = %s AND p.name = %s AND p.seq >= %s AND p.seq < %s
                   ORDER BY p.seq DESC""",
                [*key, start, stop],
            ).fetchall()
        )
        return [
            PositionedRender(
                code, utc(updated), source_id, content, bytes(packed) if packed else None
            )
            for code, updated, source_id, content, packed in rows
        ]

    def articles_by_code(self, codes: Sequence[str]) -> dict[str, StoredArticle]:
        rows = self._dicts(
            f"SELECT {_ARTICLE_COLUMNS} FROM entries e WHERE e.code = ANY(%s)", [list(codes)]
        )
        return {row["code"]: article_of(row) for row in rows}

    def fill_renders(
        self, codes: Sequence[str], render: Callable[[dict[str, StoredArticle]], dict[str, bytes]]
    ) -> dict[str, bytes]:
        """The render cache rows render() makes of these entries, kept: their entries
        are share-locked meanwhile, so no ingest changes them between the two."""

        def work(cur: psycopg.Cursor[Any]) -> dict[str, bytes]:
            cur.execute(
                "SELECT code FROM entries WHERE code = ANY(%s) ORDER BY code FOR SHARE",
                [sorted(set(codes))],
            )
            cur.fetchall()
            with cur.connection.cursor(row_factory=dict_row) as reader:
                reader.execute(
                    f"SELECT {_ARTICLE_COLUMNS} FROM entries e WHERE e.code = ANY(%s)",
                    [list(codes)],
                )
                articles = {row["code"]: article_of(row) for row in reader.fetchall()}
            rows = render(articles)
            cur.executemany(
                """INSERT INTO rendered_entries (code, pack) VALUES (%s, %s)
                   ON CONFLICT (code) DO UPDATE SET pack = excluded.pack""",
                list(rows.items()),
            )
            return rows

        return self._write(work)

    def clear_renders(self) -> None:
        self._write(lambda cur: cur.execute("DELETE FROM rendered_entries") and None)

    # --- what is left to publish ---

    def set_node(self, node: str) -> None:
        """Publish as one node of several, each into its own folder: from now on
        unpublished(), holes() and mark_published() are this node's (a feed is
        unpublished for it until it has written the feed's latest mark), and nothing
        is cleared for the others."""
        self.node = node

    def unpublished(self) -> dict[FeedKey, int]:
        if self.node is None:
            sql, params = "SELECT kind, name, mark FROM feed_unpublished", []
        else:
            # "Differs", not "is newer": marks come from a sequence, so an older one may
            # be committed after a newer one (mark_unpublished).
            sql = """SELECT u.kind, u.name, u.mark FROM feed_unpublished u
                     LEFT JOIN node_published p
                       ON p.node = %s AND p.kind = u.kind AND p.name = u.name
                     WHERE p.mark IS DISTINCT FROM u.mark"""
            params = [self.node]
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return {(str(kind), str(name)): int(mark) for kind, name, mark in rows}

    def holes(self) -> dict[FeedKey, set[int]]:
        found: dict[FeedKey, set[int]] = {}
        if self.node is None:
            sql, params = "SELECT kind, name, seq FROM feed_holes", []
        else:
            sql = """SELECT h.kind, h.name, h.seq FROM feed_holes h WHERE NOT EXISTS (
                       SELECT 1 FROM node_holes n WHERE n.node = %s AND n.kind = h.kind
                       AND n.name = h.name AND n.seq = h.seq)"""
            params = [self.node]
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        for kind, name, seq in rows:
            found.setdefault((kind, name), set()).add(int(seq))
        return found

    def mark_published(
        self, marks: dict[FeedKey, int], holes: dict[FeedKey, set[int]] | None = None
    ) -> None:
        """Clear the marks (and holes) read before the feeds were rendered; a feed
        marked again meanwhile keeps its newer mark."""
        filled = sorted((*key, seq) for key, seqs in (holes or {}).items() for seq in seqs)
        if not marks and not filled:
            return

        def work(cur: psycopg.Cursor[Any]) -> None:
            if self.node is not None:
                cur.executemany(
                    """INSERT INTO node_published (node, kind, name, mark)
                       VALUES (%s, %s, %s, %s) ON CONFLICT (node, kind, name)
                       DO UPDATE SET mark = excluded.mark""",
                    sorted((self.node, *key, mark) for key, mark in marks.items()),
                )
                cur.executemany(
                    """INSERT INTO node_holes (node, kind, name, seq) VALUES (%s, %s, %s, %s)
                       ON CONFLICT DO NOTHING""",
                    [(self.node, *hole) for hole in filled],
                )
                return
            cur.executemany(
                "DELETE FROM feed_unpublished WHERE kind = %s AND name = %s AND mark = %s",
                sorted((kind, name, mark) for (kind, name), mark in marks.items()),
            )
            cur.executemany(
                "DELETE FROM feed_holes WHERE kind = %s AND name = %s AND seq = %s", filled
            )

        self._write(work)

    def entry_count(self) -> int:
        row = self._read(lambda conn: conn.execute("SELECT count(*) FROM entries").fetchone())
        return int(row[0]) if row else 0

    def entry_sources(self, code: str) -> list[str]:
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT source_id FROM entry_sources WHERE code = %s ORDER BY source_id", [code]
            ).fetchall()
        )
        return [source_id for (source_id,) in rows]

    # --- retention ---

    def retain(
        self,
        choose: Callable[[Sequence[Candidate]], Iterable[str]],
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> tuple[list[str], set[FeedKey]]:
        """Remove the entries choose() picks among all of them, each leaving a tombstone
        (so a later poll does not bring it back), in one transaction; returns their
        codes, sorted, and the feeds that listed them. The entries are locked while
        chosen, so another node's ingest waits rather than re-adding a source to one
        being removed. A dry run removes nothing and returns no feeds."""

        def work(cur: psycopg.Cursor[Any]) -> tuple[list[str], set[FeedKey]]:
            cur.execute(
                """SELECT e.code, e.published, e.title, e.source_id,
                          array(SELECT es.source_id FROM entry_sources es
                                WHERE es.code = e.code ORDER BY es.source_id)
                   FROM entries e ORDER BY e.code FOR UPDATE"""
            )
            candidates = []
            details: dict[str, tuple[str, str, str]] = {}
            for code, published, title, source_id, carriers in cur.fetchall():
                candidates.append(Candidate(code, utc(published), tuple(carriers)))
                details[code] = (source_id, title, published)
            removed = sorted(set(choose(candidates)))
            if dry_run or not removed:
                return removed, set()
            changed = feeds_holding(cur, removed)
            mark_unpublished(cur, changed)
            cur.executemany(
                """INSERT INTO tombstones (code, source_id, title, published, removed_at, reason)
                   VALUES (%s, %s, %s, %s, %s, 'retention')
                   ON CONFLICT (code) DO UPDATE SET source_id = excluded.source_id,
                     title = excluded.title, published = excluded.published,
                     removed_at = excluded.removed_at, reason = excluded.reason""",
                [(code, *details[code], iso(now)) for code in removed],
            )
            remove_entries(cur, removed)
            return removed, changed

        return self._write(work)


# An entry as article_of reads it: its row, its tags and its categories (sorted).
_ARTICLE_COLUMNS = """e.*,
    (SELECT coalesce(json_agg(name ORDER BY name), '[]')::text FROM entry_tags t
       WHERE t.code = e.code) AS tag_names,
    (SELECT coalesce(json_agg(name ORDER BY name), '[]')::text FROM entry_categories c
       WHERE c.code = e.code) AS category_names"""

# Append a poll's record to the source's recent polls, keeping the last RECENT_POLLS.
_APPEND_POLL = f"right(coalesce(recent_polls, '') || %(recent_poll)s, {RECENT_POLLS * RECORD})"


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    exists = conn.execute("SELECT to_regclass('store_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM store_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _feed_lock(key: FeedKey) -> int:
    """A 32-bit advisory lock key for a feed (a collision only makes two feeds wait)."""
    return zlib.crc32(f"feed\0{key[0]}\0{key[1]}".encode())


def _show(cur: psycopg.Cursor[Any], source: Source, entry: EntryRecord, decision: Decision) -> None:
    """Make the entry show this copy (see the SQLite store's _show)."""
    published = decision.published if decision.action is Action.SWITCH else entry.published
    assert decision.updated is not None
    cur.execute(
        """UPDATE entries SET code_rule = %s, guid = %s, title = %s, link = %s, updated = %s,
             author = %s, summary = %s, content = %s, categories = %s, enclosures = %s,
             published = COALESCE(%s, published), published_raw = %s, updated_raw = %s,
             source_id = %s
           WHERE code = %s""",
        [
            entry.code_rule,
            entry.guid,
            entry.title,
            entry.link,
            iso(decision.updated),
            entry.author,
            entry.summary,
            entry.content,
            json_list(entry.categories),
            json_enclosures(entry.enclosures),
            iso(published) if published else None,
            entry.published_raw,
            entry.updated_raw,
            source.id,
            entry.code,
        ],
    )


def _link_source(
    cur: psycopg.Cursor[Any], source: Source, entry: EntryRecord, hashed: str, now: datetime
) -> None:
    stamp = iso(now)
    cur.execute(
        """INSERT INTO entry_sources (code, source_id, guid, entry_hash, first_seen, last_seen,
             raw_digest, fingerprint)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (code, source_id) DO UPDATE SET guid = excluded.guid,
             entry_hash = excluded.entry_hash, last_seen = excluded.last_seen,
             raw_digest = excluded.raw_digest, fingerprint = excluded.fingerprint""",
        [
            entry.code,
            source.id,
            entry.guid,
            hashed,
            stamp,
            stamp,
            entry.raw_digest or None,
            entry.fingerprint or None,
        ],
    )
    categories = [(entry.code, c) for c in (source.category, *entry.extra_categories)]
    tags = [(entry.code, tag) for tag in (*source.tags, *entry.extra_tags)]
    added = _insert_names(cur, "entry_categories", categories)
    added += _insert_names(cur, "entry_tags", tags)
    if added:  # shown with other categories or tags now
        cur.execute("DELETE FROM rendered_entries WHERE code = %s", [entry.code])
    _queue_members(cur, [], [(entry.code, source.id)], categories, tags)


def _insert_names(cur: psycopg.Cursor[Any], table: str, rows: Sequence[tuple[str, str]]) -> int:
    """Insert (code, name) rows that are not there yet; returns how many were."""
    if not rows:
        return 0
    cur.execute(
        f"""INSERT INTO {table} (code, name)
            SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING""",
        [[code for code, _ in rows], [name for _, name in rows]],
    )
    return max(cur.rowcount, 0)


class _NewEntries(NewEntryRows):
    """One poll's new entries, written with one statement per table."""

    def write(self, cur: psycopg.Cursor[Any]) -> None:
        if not self.entries:
            return
        # In code order: two nodes storing overlapping new entries meet at the first
        # one they share, instead of each holding one the other waits for.
        cur.executemany(
            """INSERT INTO entries (code, code_rule, guid, title, link, published, updated,
                 first_seen, author, summary, content, categories, enclosures, source_id,
                 published_raw, updated_raw)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            sorted(self.entries),
        )
        links = [
            (
                e.code,
                source_id,
                e.guid,
                entry_hash(e),
                stamp,
                stamp,
                e.raw_digest or None,
                e.fingerprint or None,
            )
            for e, source_id, stamp in self.carried
        ]
        cur.executemany(
            """INSERT INTO entry_sources (code, source_id, guid, entry_hash, first_seen,
                 last_seen, raw_digest, fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            links,
        )
        _insert_names(cur, "entry_categories", self.categories)
        _insert_names(cur, "entry_tags", self.tags)
        _queue_members(cur, [row[0] for row in self.entries], links, self.categories, self.tags)


def mark_unpublished(cur: psycopg.Cursor[Any], keys: Iterable[FeedKey]) -> None:
    """In the caller's transaction, mark these feeds as not showing it yet. The mark
    comes from a sequence (unique, increasing), so taking one waits for nobody; a
    publisher clears only the marks it read, so an older mark written after it read
    stays, and the feed is published once more."""
    rows = sorted(set(keys))
    if not rows:
        return
    cur.execute("SELECT nextval('unpublished_marks')")
    (mark,) = cur.fetchone()  # type: ignore[misc]
    cur.executemany(
        """INSERT INTO feed_unpublished (kind, name, mark) VALUES (%s, %s, %s)
           ON CONFLICT (kind, name) DO UPDATE SET mark = excluded.mark""",
        [(kind, name, mark) for kind, name in rows],
    )


def remove_entries(cur: psycopg.Cursor[Any], codes: Sequence[str]) -> None:
    """Delete these entries in the caller's transaction (see the SQLite store's)."""
    wanted = sorted(codes)
    cur.execute(
        """INSERT INTO feed_holes (kind, name, seq)
           SELECT kind, name, seq FROM feed_positions WHERE code = ANY(%s)
           ON CONFLICT DO NOTHING""",
        [wanted],
    )
    cur.execute("DELETE FROM entries WHERE code = ANY(%s)", [wanted])
    cur.execute(
        """DELETE FROM feed_pending q WHERE NOT EXISTS
           (SELECT 1 FROM entries e WHERE e.code = q.code)"""
    )


def feeds_holding(cur: psycopg.Cursor[Any], codes: Sequence[str]) -> set[FeedKey]:
    """Every feed that lists one of these entries (the whole-store feed included)."""
    if not codes:
        return set()
    cur.execute(
        """SELECT DISTINCT 'category', name FROM entry_categories WHERE code = ANY(%(c)s)
           UNION SELECT DISTINCT 'tag', name FROM entry_tags WHERE code = ANY(%(c)s)
           UNION SELECT DISTINCT 'source', source_id FROM entry_sources WHERE code = ANY(%(c)s)""",
        {"c": list(codes)},
    )
    return {("all", ""), *((str(kind), str(name)) for kind, name in cur.fetchall())}


def _queue_members(
    cur: psycopg.Cursor[Any],
    codes: Sequence[str],
    links: Sequence[tuple[Any, ...]],
    categories: Sequence[tuple[str, str]],
    tags: Sequence[tuple[str, str]],
) -> None:
    """Queue feed memberships for position_feed (see the SQLite store's)."""
    rows = sorted(
        {
            *(("all", "", code) for code in codes),
            *(("source", link[1], link[0]) for link in links),
            *(("category", name, code) for code, name in categories),
            *(("tag", name, code) for code, name in tags),
        }
    )
    if not rows:
        return
    cur.execute(
        """INSERT INTO feed_pending (kind, name, code)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING""",
        [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
    )


def carriers_of(url: str, codes: Sequence[str]) -> dict[str, list[str]]:
    """The sources storing each of these codes, read without writing or migrating
    anything: {} where the database cannot be read."""
    if not codes:
        return {}
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(
                """SELECT code, source_id FROM entry_sources WHERE code = ANY(%s)
                   ORDER BY code, source_id""",
                [sorted(set(codes))],
            ).fetchall()
    except psycopg.Error:
        return {}
    found: dict[str, list[str]] = {}
    for code, source_id in rows:
        found.setdefault(code, []).append(source_id)
    return found
