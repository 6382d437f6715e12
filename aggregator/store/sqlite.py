"""SQLite storage through sqlite-utils.

WAL mode, one schema version in ``PRAGMA user_version`` with numbered
migrations, and every write in one ``BEGIN IMMEDIATE`` transaction, so a
kill -9 at any moment leaves either the whole poll or none of it.
One connection per Store, shared by threads behind a lock.
"""

from __future__ import annotations

import fcntl
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import sqlite_utils

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
from aggregator.identity.identify import content_fingerprint, legacy_scoped
from aggregator.models import Enclosure, EntryRecord, ParsedFeed

FeedKey = tuple[str, str]  # ("all", ""), ("category", name), ("tag", name), ("source", id)
SourceRow = sqlite3.Row  # by column name; hashable, equal when the values are


@functools.lru_cache(maxsize=1024)
def iso(value: datetime) -> str:
    """Fixed-width UTC text, so stored times sort as strings (isoformat: strftime's
    twin, several times faster). Remembered: an ingest writes its `now` three times
    per entry."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    # fromisoformat reads our fixed-width form (with its Z) ~20x faster than strptime.
    return datetime.fromisoformat(value).astimezone(UTC)


# --- schema --------------------------------------------------------------------------


def _migration_1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE sources (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL DEFAULT '',
            feed_title TEXT, feed_link TEXT, feed_id TEXT,
            etag TEXT, last_modified TEXT, body_hash TEXT,
            last_poll_at TEXT, last_success_at TEXT,
            last_result TEXT, last_http_status INTEGER,
            last_error TEXT, last_error_at TEXT,
            error_count INTEGER NOT NULL DEFAULT 0,
            next_poll_at TEXT, moved_to TEXT, disabled_reason TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE entries (
            code TEXT PRIMARY KEY,
            code_rule TEXT NOT NULL,
            guid TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            link TEXT NOT NULL DEFAULT '',
            published TEXT NOT NULL,
            updated TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            author TEXT NOT NULL DEFAULT '',
            summary TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL DEFAULT '',
            categories TEXT NOT NULL DEFAULT '[]',
            enclosures TEXT NOT NULL DEFAULT '[]',
            source_id TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE entry_sources (
            code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
            source_id TEXT NOT NULL,
            guid TEXT NOT NULL DEFAULT '',
            entry_hash TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (code, source_id)
        )"""
    )
    for kind in ("categories", "tags"):
        db.execute(
            f"""CREATE TABLE entry_{kind} (
                code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
                name TEXT NOT NULL,
                PRIMARY KEY (code, name)
            )"""
        )
        db.execute(f"CREATE INDEX entry_{kind}_name ON entry_{kind}(name, code)")
    db.execute("CREATE INDEX entries_published ON entries(published DESC, code)")
    db.execute("CREATE INDEX entry_sources_source ON entry_sources(source_id, code)")


def _migration_2(db: sqlite_utils.Database) -> None:
    """Each feed numbers its entries in the order they joined it (RFC 5005 archive pages)."""
    db.execute(
        """CREATE TABLE feed_positions (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            PRIMARY KEY (kind, name, code)
        )"""
    )
    db.execute("CREATE UNIQUE INDEX feed_positions_seq ON feed_positions(kind, name, seq)")


def _migration_3(db: sqlite_utils.Database) -> None:
    """Tombstones: share codes removed by retention, so a later poll never brings them back."""
    db.execute(
        """CREATE TABLE tombstones (
            code TEXT PRIMARY KEY,
            source_id TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            published TEXT,
            removed_at TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        )"""
    )


def _migration_4(db: sqlite_utils.Database) -> None:
    # The feed's own polling hints (<ttl>, skipHours/skipDays, sy:updatePeriod),
    # kept so a 304 answer still honours them.
    db.execute("ALTER TABLE sources ADD COLUMN poll_hints TEXT")


def _migration_5(db: sqlite_utils.Database) -> None:
    # Each source's copy keeps the digest of its raw XML (salted with the source's
    # config), so a poll of a changed feed skips the entries it has stored unchanged.
    db.execute("ALTER TABLE entry_sources ADD COLUMN raw_digest TEXT")


def _migration_6(db: sqlite_utils.Database) -> None:
    """Publishing without scans: a queue of feed members still without a position,
    and each entry's rendered Atom/JSON fragments, both kept current by triggers."""
    # Filled by triggers as entries join feeds, emptied by position_feed: finding the
    # new members of a 50 000-entry feed no longer walks the whole feed.
    db.execute(
        """CREATE TABLE feed_pending (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
            PRIMARY KEY (kind, name, code)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX feed_pending_code ON feed_pending(code)")
    for table, kind, name in (
        ("entries", "'all'", "''"),
        ("entry_categories", "'category'", "NEW.name"),
        ("entry_tags", "'tag'", "NEW.name"),
        ("entry_sources", "'source'", "NEW.source_id"),
    ):
        db.execute(
            f"""CREATE TRIGGER {table}_pending AFTER INSERT ON {table} BEGIN
                INSERT OR IGNORE INTO feed_pending (kind, name, code)
                VALUES ({kind}, {name}, NEW.code);
            END"""
        )
    for kind, members in _MEMBER_ROWS.items():
        db.execute(
            f"""INSERT OR IGNORE INTO feed_pending (kind, name, code)
                SELECT '{kind}', m.name, m.code FROM ({members}) m
                WHERE NOT EXISTS (SELECT 1 FROM feed_positions p
                  WHERE p.kind = '{kind}' AND p.name = m.name AND p.code = m.code)"""
        )
    # A document's page of positions and what it shows of each entry, read from
    # indexes alone (source_id sits behind the content in the entries row).
    db.execute("CREATE INDEX feed_positions_page ON feed_positions(kind, name, seq, code)")
    db.execute("CREATE INDEX entries_shown ON entries(code, updated, source_id)")
    # What an entry looks like in a published document, rendered once (aggregator.publish).
    # Any change to the entry or its categories/tags drops it; "context" is a digest of
    # the config and source metadata it was rendered with.
    db.execute(
        """CREATE TABLE entry_renders (
            code TEXT PRIMARY KEY REFERENCES entries(code) ON DELETE CASCADE,
            context TEXT NOT NULL,
            shown TEXT NOT NULL,
            atom TEXT NOT NULL,
            json TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TRIGGER entries_renders AFTER UPDATE ON entries BEGIN
            DELETE FROM entry_renders WHERE code IN (OLD.code, NEW.code);
        END"""
    )
    for table in ("entry_categories", "entry_tags"):
        for event, row in (("INSERT", "NEW"), ("DELETE", "OLD")):
            db.execute(
                f"""CREATE TRIGGER {table}_renders_{event.lower()} AFTER {event} ON {table}
                    BEGIN DELETE FROM entry_renders WHERE code = {row}.code; END"""
            )


# Each kind of feed's members as (name, code) rows, for the migration's backfill.
_MEMBER_ROWS = {
    "all": "SELECT '' AS name, code FROM entries",
    "category": "SELECT name, code FROM entry_categories",
    "tag": "SELECT name, code FROM entry_tags",
    "source": "SELECT source_id AS name, code FROM entry_sources",
}


def _migration_7(db: sqlite_utils.Database) -> None:
    """Feed members are queued by the statements that add them (_queue_members), not by
    row triggers: a trigger runs a sub-program per row, which made queueing a new
    entry's four memberships cost as much as storing the entry itself."""
    for table in ("entries", "entry_categories", "entry_tags", "entry_sources"):
        db.execute(f"DROP TRIGGER IF EXISTS {table}_pending")
    # For the same reason, a stored entry that gains a category or tag drops its
    # rendered fragments in _link_source; a new entry has none to drop.
    for table in ("entry_categories", "entry_tags"):
        db.execute(f"DROP TRIGGER IF EXISTS {table}_renders_insert")


# What the publisher reads whole on every publish, each with a number that moves when
# it may have changed (see Store.version): unchanged, the publisher keeps its copy.
_SOURCE_SHOWN = ("name", "url", "feed_title", "feed_link", "feed_id", "moved_to")


def _migration_8(db: sqlite_utils.Database) -> None:
    """Versions of what an incremental publish would otherwise read whole each time:
    the sources' shown metadata (a thousand rows) and the set of feeds (a seek per feed).
    Triggers keep them: poll states and unchanged feed titles move nothing."""
    db.execute(
        """CREATE TABLE store_versions (
            what TEXT PRIMARY KEY,
            version INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT INTO store_versions (what) VALUES ('source_meta'), ('feed_keys')")
    bump_meta = "UPDATE store_versions SET version = version + 1 WHERE what = 'source_meta';"
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _SOURCE_SHOWN)
    db.execute(f"CREATE TRIGGER sources_shown_insert AFTER INSERT ON sources BEGIN {bump_meta} END")
    db.execute(f"CREATE TRIGGER sources_shown_delete AFTER DELETE ON sources BEGIN {bump_meta} END")
    db.execute(
        f"""CREATE TRIGGER sources_shown_update AFTER UPDATE OF {", ".join(_SOURCE_SHOWN)}
            ON sources WHEN {changed} BEGIN {bump_meta} END"""
    )
    # A feed goes away only with its last entry (memberships follow entries by cascade).
    # Feeds that appear are found by Store.feed_keys among the queued members, and
    # position_feed moves the version when it numbers a feed's first members.
    db.execute(
        """CREATE TRIGGER entries_gone AFTER DELETE ON entries BEGIN
            UPDATE store_versions SET version = version + 1 WHERE what = 'feed_keys';
        END"""
    )


# The membership tables as migration 9 leaves them: keyed by what they are looked up
# by, with no rowid beside the key.
_MEMBERSHIP_TABLES = {
    "entry_sources": (
        """code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
           source_id TEXT NOT NULL,
           guid TEXT NOT NULL DEFAULT '',
           entry_hash TEXT NOT NULL,
           first_seen TEXT NOT NULL,
           last_seen TEXT NOT NULL,
           raw_digest TEXT,
           PRIMARY KEY (code, source_id)""",
        "CREATE INDEX entry_sources_source ON entry_sources(source_id, code)",
    ),
    **{
        f"entry_{kind}": (
            """code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
               name TEXT NOT NULL,
               PRIMARY KEY (code, name)""",
            f"CREATE INDEX entry_{kind}_name ON entry_{kind}(name, code)",
        )
        for kind in ("categories", "tags")
    },
}


def _migration_9(db: sqlite_utils.Database) -> None:
    """Fewer B-trees written per new entry (a first poll stores thousands a second,
    each into every index of every table it joins):
    - the membership tables lose their rowid: a rowid table keeps its primary key in
      a second B-tree beside the rows, so every row was written twice;
    - the publish queue loses its foreign key and the index on code that served it:
      retention drops the queued members of what it removes, and any other member
      whose entry is gone is passed over where the queue is read (Store.feed_keys,
      _unpositioned) and dropped with its feed's queue;
    - entries lose the index by publication date: feeds are read by position."""
    for table, (columns, index) in _MEMBERSHIP_TABLES.items():
        db.execute(f"CREATE TABLE {table}_new ({columns}) WITHOUT ROWID")
        names = ", ".join(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        db.execute(f"INSERT INTO {table}_new ({names}) SELECT {names} FROM {table}")
        db.execute(f"DROP TABLE {table}")  # and its index and triggers
        db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        db.execute(index)
    for table in ("entry_categories", "entry_tags"):  # as migration 6 made them
        db.execute(
            f"""CREATE TRIGGER {table}_renders_delete AFTER DELETE ON {table}
                BEGIN DELETE FROM entry_renders WHERE code = OLD.code; END"""
        )
    db.execute(
        """CREATE TABLE feed_pending_new (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            code TEXT NOT NULL,
            PRIMARY KEY (kind, name, code)
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT INTO feed_pending_new SELECT kind, name, code FROM feed_pending")
    db.execute("DROP TABLE feed_pending")
    db.execute("ALTER TABLE feed_pending_new RENAME TO feed_pending")
    db.execute("DROP INDEX entries_published")


def _migration_10(db: sqlite_utils.Database) -> None:
    """Each source's recent history, for the status page, kept where writing it costs
    least (a 304 writes nothing else):
    - its last RECENT_POLLS polls (when, result, HTTP status, fetch time), fixed-width
      records in its own sources row, which every poll rewrites anyway; in a table of
      their own they made each poll write one more page;
    - per UTC day, its failed polls and the entries it carried first, a row written
      only when there are some, pruned after HISTORY_DAYS."""
    db.execute("ALTER TABLE sources ADD COLUMN last_fetch_seconds REAL")
    db.execute("ALTER TABLE sources ADD COLUMN recent_polls TEXT")
    db.execute(
        """CREATE TABLE poll_days (
            source_id TEXT NOT NULL,
            day TEXT NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            new_entries INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (source_id, day)
        ) WITHOUT ROWID"""
    )


def _migration_11(db: sqlite_utils.Database) -> None:
    """Feeds whose published documents do not yet show what the store holds, kept in
    the transaction that changed them and cleared by the publisher once their files
    are durable (see Store.unpublished): a publish cut short by a kill is finished by
    the next command that publishes, whatever it polled itself. Each mark is the
    number of the change that set it, so a publisher clears only what it has shown."""
    db.execute(
        """CREATE TABLE feed_unpublished (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            mark INTEGER NOT NULL,
            PRIMARY KEY (kind, name)
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT INTO store_versions (what) VALUES ('unpublished')")
    # Positions whose entries were removed (retention): the full archive pages that
    # showed them are written again without them, then the holes are forgotten.
    db.execute(
        """CREATE TABLE feed_holes (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (kind, name, seq)
        ) WITHOUT ROWID"""
    )
    # Whatever an older version left half published is not known: every feed once.
    db.execute(
        """INSERT INTO feed_unpublished (kind, name, mark)
           SELECT 'all', '', 0 WHERE EXISTS (SELECT 1 FROM entries)
           UNION SELECT DISTINCT 'category', name, 0 FROM entry_categories
           UNION SELECT DISTINCT 'tag', name, 0 FROM entry_tags
           UNION SELECT DISTINCT 'source', source_id, 0 FROM entry_sources"""
    )


def _migration_12(db: sqlite_utils.Database) -> None:
    # The end of the window a server's Retry-After asked for: every command keeps it,
    # even one that polls whether due or not (schedule.hold).
    db.execute("ALTER TABLE sources ADD COLUMN retry_not_before TEXT")


def _migration_13(db: sqlite_utils.Database) -> None:
    """Each entry keeps its dates as the feed wrote them, beside our reading of them
    (which may have refused one). Entries stored before have none (NULL)."""
    db.execute("ALTER TABLE entries ADD COLUMN published_raw TEXT")
    db.execute("ALTER TABLE entries ADD COLUMN updated_raw TEXT")


def _migration_14(db: sqlite_utils.Database) -> None:
    """Identities with scopes (aggregator.identity.identify). Nothing is merged, dropped or
    renamed: every entry keeps its code, so its Atom id. Codes that now belong to one
    source (a short guid "guid:1", a content hash "hash:…") are recorded as the old
    codes of the source that first stored them, so its entries are still found under
    them; any other source that was recorded as carrying one (a collision: two feeds
    numbering their items) gets its own entries from its next poll, and the entry is
    checked against its first source's copy, which a colliding copy may have replaced.
    Copies known by their guid get fingerprints, so a new guid for the same article is
    recognised from the first poll on."""
    db.execute("ALTER TABLE entry_sources ADD COLUMN fingerprint TEXT")
    db.execute(
        """CREATE INDEX entry_sources_fingerprint ON entry_sources(source_id, fingerprint)
           WHERE fingerprint IS NOT NULL"""
    )
    db.execute(
        """CREATE TABLE legacy_codes (
            code TEXT NOT NULL,
            source_id TEXT NOT NULL,
            recheck INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (code, source_id)
        ) WITHOUT ROWID"""
    )
    owners = {
        code: owner
        for code, owner in db.execute(
            "SELECT code, source_id FROM entries WHERE code_rule IN ('guid', 'link', 'hash')"
        ).fetchall()
        if legacy_scoped(code)
    }
    carriers: dict[str, list[str]] = {}
    for chunk, marks in _chunks(list(owners)):
        rows = db.execute(
            f"SELECT code, source_id FROM entry_sources WHERE code IN ({marks})", chunk
        ).fetchall()
        for code, source_id in rows:
            carriers.setdefault(code, []).append(source_id)
    collided = {code for code, found in carriers.items() if set(found) != {owners[code]}}
    db.conn.executemany(
        "INSERT INTO legacy_codes (code, source_id, recheck) VALUES (?, ?, ?)",
        [(code, owner, int(code in collided)) for code, owner in owners.items()],
    )
    db.conn.executemany(  # a removed entry must not come back under its new code
        "INSERT OR IGNORE INTO legacy_codes (code, source_id) VALUES (?, ?)",
        [
            row
            for row in db.execute("SELECT code, source_id FROM tombstones")
            if legacy_scoped(row[0])
        ],
    )
    # Read again at the next poll: the colliding carriers, to get entries of their own;
    # the first source, to be checked against what the entry shows.
    db.conn.executemany(
        "UPDATE entry_sources SET raw_digest = NULL WHERE code = ?", [(c,) for c in collided]
    )
    rows = db.execute(
        """SELECT e.code, e.source_id, e.link, e.title, e.enclosures, e.summary, e.content
           FROM entries e WHERE e.code_rule = 'guid'"""
    ).fetchall()
    db.conn.executemany(
        "UPDATE entry_sources SET fingerprint = ? WHERE code = ? AND source_id = ?",
        [
            (
                content_fingerprint(
                    link, title, [e[0] for e in json.loads(enclosures)], summary, content
                ),
                code,
                owner,
            )
            for code, owner, link, title, enclosures, summary, content in rows
        ],
    )


MIGRATIONS: Sequence[Callable[[sqlite_utils.Database], None]] = (
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
    _migration_12,
    _migration_13,
    _migration_14,
)
SCHEMA_VERSION = len(MIGRATIONS)

# WAL pages written before a commit copies them back into the database file. A
# first poll writes tens of thousands of pages, many of them the same index pages
# again and again; at SQLite's default (1000) each checkpoint copied and fsynced
# them once more, and a first poll ran ~10% slower than with this many. Counted in
# pages: 256 MB of WAL at most in 16 KB pages (PAGE_SIZE), 64 MB in 4 KB ones. A
# quarter as many 16 KB pages (64 MB) made the 1000 x 20 first poll ~7% slower.
WAL_CHECKPOINT_PAGES = 16_000
# Once a checkpoint has emptied the WAL, its file is cut back to this size.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
# The page size of a new database (one made before keeps its own: SQLite cannot change
# it in WAL mode). An entry row carries a 2-4 KB body, often more than a 4 KB page
# (SQLite's default) holds, so each spilled onto an overflow page of its own; in 16 KB
# pages a few rows share one, and a first poll makes half the write and read calls.
PAGE_SIZE = 16 * 1024

# Each source's history for the status page: its last polls one by one, and a row per
# UTC day for this many days (older days are pruned).
RECENT_POLLS = 30
HISTORY_DAYS = 30


# --- plain results -------------------------------------------------------------------


@dataclass(frozen=True)
class SourceState:
    id: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    error_count: int = 0
    next_poll_at: datetime | None = None
    moved_to: str | None = None
    disabled_reason: str | None = None
    poll_hints: str | None = None  # JSON, see poll.py
    retry_not_before: datetime | None = None


_STATE_COLUMNS = """id, etag, last_modified, body_hash, error_count, next_poll_at, moved_to,
    disabled_reason, poll_hints, retry_not_before"""


def _source_state(row: Sequence[Any]) -> SourceState:
    source_id, etag, modified, body_hash, errors, next_poll, moved_to, disabled, hints, wait = row
    return SourceState(
        id=source_id,
        etag=etag,
        last_modified=modified,
        body_hash=body_hash,
        error_count=errors,
        next_poll_at=from_iso(next_poll),
        moved_to=moved_to,
        disabled_reason=disabled,
        poll_hints=hints,
        retry_not_before=from_iso(wait),
    )


class PollDay(NamedTuple):
    """One source's UTC day (a poll_days row): its failed polls, and the entries it
    carried first (new ones, and ones another source brought before)."""

    source_id: str
    day: str  # YYYY-MM-DD
    failures: int
    new_entries: int


class RecentPoll(NamedTuple):
    source_id: str
    at: datetime
    result: str
    http_status: int | None
    fetch_seconds: float | None


@dataclass(frozen=True)
class StatusRows:
    """What Store.status_rows read, from one snapshot."""

    sources: list[dict[str, Any]]  # every column of sources, and entry_count
    days: list[PollDay]
    recent: list[RecentPoll]
    entries: int
    history_for: frozenset[str] | None = None  # whose history was read; None: everyone's


@dataclass
class IngestResult:
    new: int = 0
    updated: int = 0
    added_source: int = 0
    unchanged: int = 0
    tombstoned: int = 0  # entries skipped because retention removed them before
    changed_feeds: set[FeedKey] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return bool(self.changed_feeds)


@dataclass(frozen=True)
class StoredArticle:
    """An entry as the publisher needs it."""

    code: str
    title: str
    link: str
    published: datetime
    updated: datetime
    author: str
    summary: str
    content: str
    categories: tuple[str, ...]
    enclosures: tuple[Enclosure, ...]
    source_id: str
    tags: tuple[str, ...] = ()
    entry_categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Render:
    """An entry's cached fragments: valid while context and shown updated match."""

    context: str
    shown: str  # the atom:updated shown, as text
    atom: bytes  # its <entry> element as it stands in a pretty-printed feedgen document
    json: bytes  # its JSON Feed item, compact UTF-8


@dataclass(frozen=True)
class PositionedRender:
    code: str
    updated: datetime
    source_id: str
    render: Render | None


class Store:
    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._keys_seen: tuple[int, frozenset[FeedKey]] | None = None  # see feed_keys
        self._batch: _Batch | None = None  # the batch under way (see batch)
        self._pruned_day: str | None = None  # see record_polls
        self._write_lock: BinaryIO | None = None
        try:
            self._write_lock = _open_write_lock(self.path)
            self._set_up(conn)
        except (sqlite3.DatabaseError, OSError) as exc:  # not a database, say
            self.close()
            raise StoreError(f"cannot use database {self.path}: {exc}") from None

    def _set_up(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before anything is written
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: every commit survives a process kill; only an OS
        # crash could lose the last transactions.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        # Only a database made before identity scopes has old codes to look up.
        self._has_legacy_codes = conn.execute("SELECT 1 FROM legacy_codes LIMIT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self.db.close()
            if self._write_lock is not None:
                self._write_lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction; rolled back whole on any exception. Opened inside a
        batch, it is part of the batch's transaction (see batch)."""
        with self._lock:
            if self._batch is not None:
                try:
                    yield self.db
                except BaseException:
                    self._batch.failed = True
                    raise
                return
            with _held(self._write_lock):
                conn = self.db.conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # a failed COMMIT may leave it open
                        conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several transactions committed as one: one commit (its WAL writes, its
        lock) instead of one each. All or nothing: if any of them fails, even one
        whose caller went on, the whole batch is rolled back and BatchFailed raised,
        for the caller to do each alone. (A savepoint each would keep the others,
        but costs a copy of every page it changes.)"""
        with self._lock:
            if self._batch is not None:
                raise StoreError("batches do not nest")
            with self.transaction():
                self._batch = _Batch()
                try:
                    yield
                finally:
                    failed, self._batch = self._batch.failed, None
                if failed:
                    raise BatchFailed("a transaction in the batch failed")

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    # --- schema ---

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = self.schema_version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema {version}, newer than this program's "
                    f"{SCHEMA_VERSION}: upgrade aggregator"
                )
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- sources ---

    def sync_sources(self, sources: Iterable[Source]) -> None:
        """Mirror the config's view of each source, keeping its fetch state."""
        with self.transaction() as db:
            for source in sources:
                db.execute(
                    """INSERT INTO sources (id, name, url, category) VALUES (?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET name = excluded.name,
                         category = excluded.category,
                         moved_to = CASE WHEN sources.url = excluded.url THEN sources.moved_to END,
                         etag = CASE WHEN sources.url = excluded.url THEN sources.etag END,
                         last_modified = CASE WHEN sources.url = excluded.url
                                         THEN sources.last_modified END,
                         disabled_reason = CASE WHEN sources.url = excluded.url
                                           THEN sources.disabled_reason END,
                         retry_not_before = CASE WHEN sources.url = excluded.url
                                            THEN sources.retry_not_before END,
                         url = excluded.url""",
                    [source.id, source.name, source.url, source.category],
                )

    def enable_sources(self, source_ids: Sequence[str]) -> list[str]:
        """Lift the store's stop (410 Gone) from these sources and make them due now;
        returns the ones that were stopped."""
        with self.transaction() as db:
            stopped = []
            for chunk, marks in _chunks(source_ids):
                rows = db.conn.execute(
                    f"""UPDATE sources SET disabled_reason = NULL, next_poll_at = NULL
                        WHERE id IN ({marks}) AND disabled_reason IS NOT NULL RETURNING id""",
                    chunk,
                ).fetchall()
                stopped += [source_id for (source_id,) in rows]
        return sorted(stopped)

    def source_state(self, source_id: str) -> SourceState:
        with self._lock:  # read on every poll: plain sqlite3, no row dictionaries
            row = self.db.conn.execute(
                f"SELECT {_STATE_COLUMNS} FROM sources WHERE id = ?", [source_id]
            ).fetchone()
        return SourceState(source_id) if row is None else _source_state(row)

    def source_states(self, source_ids: Sequence[str]) -> dict[str, SourceState]:
        """source_state of many sources in a few queries (a poll of many sources reads
        them all up front); sources the store does not know get a blank state."""
        states = {source_id: SourceState(source_id) for source_id in source_ids}
        with self._lock:
            for chunk, marks in _chunks(source_ids):
                rows = self.db.conn.execute(
                    f"SELECT {_STATE_COLUMNS} FROM sources WHERE id IN ({marks})", chunk
                ).fetchall()
                states.update((row[0], _source_state(row)) for row in rows)
        return states

    def never_parsed(self, source_ids: Sequence[str]) -> int:
        """How many of these sources have no stored body yet (never parsed, or new)."""
        parsed = 0
        with self._lock:
            for chunk, marks in _chunks(source_ids):
                parsed += self.db.conn.execute(
                    f"SELECT count(*) FROM sources WHERE id IN ({marks}) AND body_hash IS NOT NULL",
                    chunk,
                ).fetchone()[0]
        return len(source_ids) - parsed

    def source_rows(self) -> list[dict[str, Any]]:
        return self._query(
            """SELECT s.*, (SELECT count(*) FROM entry_sources es WHERE es.source_id = s.id)
                 AS entry_count
               FROM sources s ORDER BY s.id"""
        )

    def record_poll(self, source_id: str, **values: Any) -> None:
        """Store the outcome of a poll: validators, status, error, next poll time."""
        self.record_polls([(source_id, values)])

    def record_polls(self, polls: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """record_poll for many sources in one write transaction: one statement for
        each run of polls that set the same columns (all of a run of 304s do), in the
        order given, so a source polled twice keeps its last poll. A record that sets
        last_poll_at is a poll: the same statement appends it to the source's recent
        polls, and a failed one counts in its day (poll_days)."""
        runs: list[tuple[tuple[str, ...], list[dict[str, Any]]]] = []
        failed: list[tuple[str, str]] = []
        day = ""  # the latest poll's UTC day
        for source_id, values in polls:
            names = tuple(values)
            row = {k: iso(v) if isinstance(v, datetime) else v for k, v in values.items()}
            row["id"] = source_id
            if "last_poll_at" in values:
                row["recent_poll"] = _recent_poll(values)
                day = max(day, row["last_poll_at"][:10])
                if values.get("last_result") in FAILED_RESULTS:
                    failed.append((source_id, row["last_poll_at"][:10]))
            if runs and runs[-1][0] == names:
                runs[-1][1].append(row)
            else:
                runs.append((names, [row]))
        with self.transaction() as db:
            conn = db.conn
            conn.executemany(
                "INSERT OR IGNORE INTO sources (id) VALUES (?)", [(i,) for i, _ in polls]
            )
            for names, rows in runs:
                assignments = ", ".join(f"{name} = :{name}" for name in names)
                if "last_poll_at" in names:
                    assignments += f", recent_polls = {_APPEND_POLL}"
                conn.executemany(f"UPDATE sources SET {assignments} WHERE id = :id", rows)
            conn.executemany(
                """INSERT INTO poll_days (source_id, day, failures) VALUES (?, ?, 1)
                   ON CONFLICT (source_id, day) DO UPDATE SET failures = failures + 1""",
                failed,
            )
            if day and day != self._pruned_day:  # the first poll of a day: prune old days
                conn.execute("DELETE FROM poll_days WHERE day < ?", [_history_start(day)])
                self._pruned_day = day

    def prune_history(self, now: datetime, source_ids: Iterable[str]) -> None:
        """Forget the daily history older than HISTORY_DAYS (record_polls also does so
        once a day) and all history of sources not among source_ids (no longer
        configured)."""
        kept = json.dumps(sorted(set(source_ids)))
        with self.transaction() as db:
            db.execute("DELETE FROM poll_days WHERE day < ?", [_history_start(iso(now)[:10])])
            db.execute(
                "DELETE FROM poll_days WHERE source_id NOT IN (SELECT value FROM json_each(?))",
                [kept],
            )
            db.execute(
                """UPDATE sources SET recent_polls = NULL WHERE recent_polls IS NOT NULL
                   AND id NOT IN (SELECT value FROM json_each(?))""",
                [kept],
            )

    def status_rows(
        self,
        since: datetime,
        history_of: Callable[[list[dict[str, Any]]], Iterable[str]] | None = None,
    ) -> StatusRows:
        """Everything the status report shows (aggregator.serve.status): every source's row
        with its entry count, and the history (days from `since`'s UTC day, recent
        polls) of those history_of picks from the rows (all when None). Read in one
        read transaction on a connection of its own: one snapshot, and the polls
        writing meanwhile (WAL) do not wait behind this store's lock."""
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        try:
            conn.execute("PRAGMA query_only=ON")
            conn.execute("BEGIN")
            cursor = conn.cursor()
            cursor.row_factory = sqlite3.Row
            counts = dict(
                conn.execute(
                    "SELECT source_id, count(*) FROM entry_sources GROUP BY source_id"
                ).fetchall()
            )
            sources = []
            kept: dict[str, str | None] = {}
            for row in cursor.execute("SELECT * FROM sources ORDER BY id").fetchall():
                source = dict(row)
                kept[source["id"]] = source.pop("recent_polls")
                source["entry_count"] = counts.get(source["id"], 0)
                sources.append(source)
            chosen = list(kept) if history_of is None else list(history_of(sources))
            recent = [poll for i in chosen for poll in _recent_polls(i, kept.get(i))]
            days = [
                PollDay(*row)
                for row in conn.execute(
                    """SELECT source_id, day, failures, new_entries FROM poll_days
                       WHERE day >= ? AND source_id IN (SELECT value FROM json_each(?))
                       ORDER BY source_id, day""",
                    [iso(since)[:10], json.dumps(chosen)],
                )
            ]
            entries = int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
            conn.execute("COMMIT")
        finally:
            conn.close()
        return StatusRows(sources, days, recent, entries, frozenset(chosen))

    # --- entries ---

    def known_digests(self, source_id: str) -> dict[str, str]:
        """The raw digests of the source's stored copies (see poll.source_salt), each
        with its share code."""
        with self._lock:
            rows = self.db.execute(
                """SELECT raw_digest, code FROM entry_sources
                   WHERE source_id = ? AND raw_digest IS NOT NULL""",
                [source_id],
            ).fetchall()
        return dict(rows)

    def _stored(self, db: sqlite_utils.Database, codes: list[str]) -> dict[str, StoredEntry]:
        found: dict[str, StoredEntry] = {}
        for chunk, marks in _chunks(codes):
            rows = db.execute(
                f"""SELECT e.code, e.updated, e.published, e.source_id, es.source_id,
                      es.entry_hash
                    FROM entries e LEFT JOIN entry_sources es ON es.code = e.code
                    WHERE e.code IN ({marks})""",
                chunk,
            ).fetchall()
            for code, updated, published, shown_by, source_id, hashed in rows:
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

    def _tombstoned(self, db: sqlite_utils.Database, codes: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk, marks in _chunks(codes):
            rows = db.execute(f"SELECT code FROM tombstones WHERE code IN ({marks})", chunk)
            found.update(code for (code,) in rows.fetchall())
        return found

    def _resolve(
        self,
        db: sqlite_utils.Database,
        source_id: str,
        entries: list[EntryRecord],
        stored: dict[str, StoredEntry],
    ) -> tuple[list[EntryRecord], set[str]]:
        """The entries under the codes they are stored as (dedup.resolve_codes), the
        stored ones among them added to `stored`; and the old codes whose entry must be
        checked against this source's copy (see _migration_14). Asks the store only
        about entries whose identity is not stored and that could be stored otherwise."""
        unknown = [e for e in entries if e.code not in stored and (e.legacy_code or e.fingerprint)]
        if not unknown:
            return entries, set()
        legacy: dict[str, str | None] = {}
        recheck: set[str] = set()
        if self._has_legacy_codes:
            for code, hashed, flagged in self._legacy_copies(db, source_id, unknown):
                legacy[code] = hashed
                if flagged:
                    recheck.add(code)
        prints = [e.fingerprint for e in unknown if e.fingerprint]
        copies = SourceCopies(legacy, self._fingerprinted(db, source_id, prints))
        resolved = resolve_codes(entries, stored.keys(), copies)
        moved = [r.code for r, e in zip(resolved, entries, strict=True) if r.code != e.code]
        stored.update(self._stored(db, [c for c in dict.fromkeys(moved) if c not in stored]))
        return resolved, recheck & set(moved)

    def _legacy_copies(
        self, db: sqlite_utils.Database, source_id: str, entries: list[EntryRecord]
    ) -> list[tuple[str, str | None, int]]:
        """(old code, the source's stored hash or None, recheck) of the source's old codes
        among these entries'."""
        codes = list(dict.fromkeys(e.legacy_code for e in entries if e.legacy_code))
        found = []
        for chunk, marks in _chunks(codes):
            found += db.execute(
                f"""SELECT l.code, es.entry_hash, l.recheck FROM legacy_codes l
                    LEFT JOIN entry_sources es ON es.code = l.code AND es.source_id = l.source_id
                    WHERE l.source_id = ? AND l.code IN ({marks})""",
                [source_id, *chunk],
            ).fetchall()
        return found

    def _fingerprinted(
        self, db: sqlite_utils.Database, source_id: str, prints: list[str]
    ) -> dict[str, str]:
        """fingerprint -> code of the source's stored copies with these fingerprints (the
        smallest code where several have one)."""
        found: dict[str, str] = {}
        for chunk, marks in _chunks(list(dict.fromkeys(prints))):
            rows = db.execute(
                f"""SELECT fingerprint, min(code) FROM entry_sources
                    WHERE source_id = ? AND fingerprint IN ({marks}) GROUP BY fingerprint""",
                [source_id, *chunk],
            ).fetchall()
            found.update(rows)
        return found

    def _shows_copy(self, db: sqlite_utils.Database, entry: EntryRecord) -> bool:
        """Whether the stored entry shows this copy's title, link and text."""
        row: tuple[str, ...] | None = db.execute(
            """SELECT title, link, author, summary, content, categories, enclosures
               FROM entries WHERE code = ?""",
            [entry.code],
        ).fetchone()
        return row == (
            entry.title,
            entry.link,
            entry.author,
            entry.summary,
            entry.content,
            _json_list(entry.categories),
            _json_enclosures(entry.enclosures),
        )

    def ingest(
        self, source: Source, feed: ParsedFeed, entries: list[EntryRecord], now: datetime
    ) -> IngestResult:
        """Apply one poll's entries in one transaction; returns what changed."""
        result = IngestResult()
        with self.transaction() as db:
            stored = self._stored(db, [e.code for e in entries])
            entries, recheck = self._resolve(db, source.id, entries, stored)
            unique = first_per_code(entries)
            removed = self._tombstoned(db, [e.code for e in unique])
            if removed:
                result.tombstoned = len(removed)
                unique = [e for e in unique if e.code not in removed]
            digests_to_keep = []
            new = NewEntries()
            joined: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()  # see below
            hashes_to_renew = []
            for entry in unique:
                known = stored.get(entry.code)
                # A new entry's hash waits for its row to be written (NewEntries.write);
                # deciding that it is new reads no hash.
                hashed = "" if known is None else entry_hash(entry)
                if known is not None:
                    known = in_current_hashes(known, entry, hashed)
                    if entry.code in recheck and not self._shows_copy(db, entry):
                        # Another source's copy took this source's entry (see _migration_14).
                        known = replace(known, source_hashes={**known.source_hashes, source.id: ""})
                decision = decide(known, source.id, entry, hashed, now)
                if decision.action is Action.UNCHANGED:
                    result.unchanged += 1
                    if entry.raw_digest:
                        digests_to_keep.append((entry.raw_digest, entry.code, source.id))
                    if not is_current_hash(stored[entry.code].source_hashes[source.id]):
                        hashes_to_renew.append((hashed, entry.code, source.id))
                    continue
                if decision.action is Action.NEW:  # written together after the loop
                    new.add(source, entry, decision, now)
                    result.new += 1
                    # The feeds a new entry joins differ only by its rules' additions.
                    extras = (entry.extra_categories, entry.extra_tags)
                    if extras not in joined:
                        joined.add(extras)
                        result.changed_feeds |= feeds_of_new(source, entry)
                    continue
                assert known is not None
                first_copy = source.id not in known.source_hashes
                if decision.action in (Action.UPDATE, Action.SWITCH):
                    self._show(db, source, entry, decision)
                if decision.action is Action.ADD_SOURCE or (
                    first_copy and decision.action is Action.SWITCH
                ):
                    result.added_source += 1
                elif decision.action is not Action.OTHER_COPY:
                    result.updated += 1
                self._link_source(db, source, entry, hashed, now)
                if decision.action is not Action.OTHER_COPY:  # which shows nothing new
                    result.changed_feeds |= self._feeds_of(db, entry.code)
            new.write(db.conn)
            if result.new + result.added_source:  # first carried by this source
                _count_new_entries(db.conn, source.id, now, result.new + result.added_source)
            if recheck:
                db.conn.executemany(
                    "UPDATE legacy_codes SET recheck = 0 WHERE code = ? AND source_id = ?",
                    [(code, source.id) for code in recheck],
                )
            # Same entry, other bytes (or stored before digests existed): next time it is
            # recognised before parsing.
            db.conn.executemany(
                """UPDATE entry_sources SET raw_digest = ?1
                   WHERE code = ?2 AND source_id = ?3 AND raw_digest IS NOT ?1""",
                digests_to_keep,
            )
            db.conn.executemany(  # an old recipe's hash, once: see dedup.HASH_VERSION
                "UPDATE entry_sources SET entry_hash = ? WHERE code = ? AND source_id = ?",
                hashes_to_renew,
            )
            shown_before = db.conn.execute(
                "SELECT feed_title, feed_link, feed_id FROM sources WHERE id = ?", [source.id]
            ).fetchone()
            db.execute(
                """INSERT INTO sources (id, name, url, category, feed_title, feed_link, feed_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET feed_title = excluded.feed_title,
                     feed_link = excluded.feed_link, feed_id = excluded.feed_id""",
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
            # A source's feed renamed shows in the atom:source of every entry it brought
            # (a first poll has nothing to rename: its entries are new).
            renamed = shown_before and tuple(shown_before) != (feed.title, feed.link, feed.feed_id)
            if renamed and shown_before[0] is not None:
                brought = db.conn.execute(
                    "SELECT code FROM entries WHERE source_id = ?", [source.id]
                ).fetchall()
                result.changed_feeds |= feeds_holding(db.conn, [c for (c,) in brought])
            mark_unpublished(db.conn, result.changed_feeds)
        return result

    def _show(
        self, db: sqlite_utils.Database, source: Source, entry: EntryRecord, decision: Decision
    ) -> None:
        """Make the entry show this copy: an edit of the shown copy (UPDATE), or another
        source's copy taking its place (SWITCH: its dates and source too)."""
        published = decision.published if decision.action is Action.SWITCH else entry.published
        assert decision.updated is not None
        db.conn.execute(
            """UPDATE entries SET code_rule = ?, guid = ?, title = ?, link = ?, updated = ?,
                 author = ?, summary = ?, content = ?, categories = ?, enclosures = ?,
                 published = COALESCE(?, published), published_raw = ?, updated_raw = ?,
                 source_id = ?
               WHERE code = ?""",
            [
                entry.code_rule,
                entry.guid,
                entry.title,
                entry.link,
                iso(decision.updated),
                entry.author,
                entry.summary,
                entry.content,
                _json_list(entry.categories),
                _json_enclosures(entry.enclosures),
                iso(published) if published else None,
                entry.published_raw,
                entry.updated_raw,
                source.id,
                entry.code,
            ],
        )

    def _link_source(
        self,
        db: sqlite_utils.Database,
        source: Source,
        entry: EntryRecord,
        hashed: str,
        now: datetime,
    ) -> None:
        stamp = iso(now)
        db.conn.execute(
            """INSERT INTO entry_sources (code, source_id, guid, entry_hash, first_seen, last_seen,
                 raw_digest, fingerprint)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(code, source_id) DO UPDATE SET guid = excluded.guid,
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
        conn = db.conn
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO entry_categories (code, name) VALUES (?, ?)", categories
        )
        conn.executemany("INSERT OR IGNORE INTO entry_tags (code, name) VALUES (?, ?)", tags)
        if conn.total_changes != before:  # shown with other categories or tags now
            conn.execute("DELETE FROM entry_renders WHERE code = ?", [entry.code])
        _queue_members(conn, [], [(entry.code, source.id)], categories, tags)

    def _feeds_of(self, db: sqlite_utils.Database, code: str) -> set[FeedKey]:
        return feeds_holding(db.conn, [code])

    def import_articles(
        self, articles: Iterable[StoredArticle], now: datetime, code_rule: str = "import"
    ) -> tuple[int, int]:
        """Store articles read from elsewhere (e.g. posts), in one transaction.

        Returns (imported, skipped): a code already stored is left as it is.
        The source link gets a hash no feed entry has, so the next poll of that
        source replaces the imported copy with the live one.
        """
        imported_codes: list[str] = []
        skipped = 0
        with self.transaction() as db:
            for article in articles:
                if db.execute("SELECT 1 FROM entries WHERE code = ?", [article.code]).fetchone():
                    skipped += 1
                    continue
                db.execute(
                    """INSERT INTO entries (code, code_rule, guid, title, link, published,
                         updated, first_seen, author, summary, content, categories,
                         enclosures, source_id)
                       VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
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
                        _json_list(article.categories),
                        _json_enclosures(article.enclosures),
                        article.source_id,
                    ],
                )
                if article.source_id:
                    db.execute(
                        """INSERT INTO entry_sources (code, source_id, guid, entry_hash,
                             first_seen, last_seen) VALUES (?, ?, '', ?, ?, ?)""",
                        [article.code, article.source_id, code_rule, iso(now), iso(now)],
                    )
                categories = [(article.code, name) for name in article.entry_categories]
                tags = [(article.code, name) for name in article.tags]
                for kind, rows in (("categories", categories), ("tags", tags)):
                    db.conn.executemany(
                        f"INSERT OR IGNORE INTO entry_{kind} (code, name) VALUES (?, ?)", rows
                    )
                links = [(article.code, article.source_id)] if article.source_id else []
                _queue_members(db.conn, [article.code], links, categories, tags)
                imported_codes.append(article.code)
            mark_unpublished(db.conn, feeds_holding(db.conn, imported_codes))
        return len(imported_codes), skipped

    # --- reading for publishing ---

    def version(self, what: str) -> int:
        """A number that moves whenever `what` ("source_meta": what source_meta_rows
        reads; "feed_keys": the feeds that positions were given in) may have changed,
        by any process."""
        with self._lock:
            row = self.db.conn.execute(
                "SELECT version FROM store_versions WHERE what = ?", [what]
            ).fetchone()
        return int(row[0]) if row else 0

    def feed_keys(self) -> set[FeedKey]:
        """Every feed that has at least one entry.

        The feeds with numbered members are kept between calls while their version
        stands (a seek per feed otherwise: a thousand on every publish); the feeds with
        members still queued are read each time (the queue is short but after a large
        poll). A feed appears in the queue before it is ever numbered, and is gone only
        when its last entry is, which moves the version."""
        version = self.version("feed_keys")  # first: a change after it means a re-read
        if self._keys_seen is None or self._keys_seen[0] != version:
            self._keys_seen = (version, self._all_feed_keys())
        with self._lock:
            # A queued member whose entry is gone (retention) makes no feed.
            queued = self.db.conn.execute(
                """SELECT kind, name FROM (SELECT DISTINCT kind, name FROM feed_pending) k
                   WHERE EXISTS (SELECT 1 FROM feed_pending q JOIN entries e ON e.code = q.code
                                 WHERE q.kind = k.kind AND q.name = k.name)"""
            )
            keys = {(str(kind), str(name)) for kind, name in queued.fetchall()}
        return keys | self._keys_seen[1]

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
        """DISTINCT column by hopping along its index, one seek per value (a plain
        DISTINCT reads every row: 50 000 per publish for a few hundred names)."""
        with self._lock:
            rows = self.db.execute(
                f"""WITH RECURSIVE seen(value) AS (
                      SELECT min({column}) FROM {table}
                      UNION ALL
                      SELECT (SELECT min({column}) FROM {table} WHERE {column} > seen.value)
                      FROM seen WHERE seen.value IS NOT NULL)
                    SELECT value FROM seen WHERE value IS NOT NULL"""
            ).fetchall()
        return [value for (value,) in rows]

    def articles(self, key: FeedKey, limit: int) -> list[StoredArticle]:
        """The newest entries of one feed, newest first, ties broken by code."""
        kind, name = key
        members = {
            "category": ("entry_categories", "name"),
            "tag": ("entry_tags", "name"),
            "source": ("entry_sources", "source_id"),
        }
        where, params = ("", []) if kind == "all" else self._membership(*members[kind], name)
        rows = self._query(
            f"""SELECT {_ARTICLE_COLUMNS}
               FROM entries e {where}
               ORDER BY e.published DESC, e.code LIMIT ?""",
            [*params, limit],
        )
        return [_article(row) for row in rows]

    def _membership(self, table: str, column: str, name: str) -> tuple[str, list[Any]]:
        """How to pick one feed's entries: a big feed by walking entries newest first
        (EXISTS, stops at the LIMIT), a small one by its list of codes (IN)."""
        count = self._query(f"SELECT count(*) AS n FROM {table} WHERE {column} = ?", [name])
        if count[0]["n"] > 1000:
            return (
                f"WHERE EXISTS (SELECT 1 FROM {table} m WHERE m.code = e.code AND m.{column} = ?)",
                [name],
            )
        return f"WHERE e.code IN (SELECT code FROM {table} WHERE {column} = ?)", [name]

    # --- feed positions (stable archive pages) ---

    def _unpositioned(self, db: sqlite_utils.Database, key: FeedKey) -> list[str]:
        """The feed's members without a position, oldest first (queued by _queue_members
        as they joined the feed)."""
        kind, name = key
        rows = db.execute(
            """SELECT e.code FROM feed_pending q JOIN entries e ON e.code = q.code
               WHERE q.kind = :kind AND q.name = :name AND NOT EXISTS (
                 SELECT 1 FROM feed_positions p
                 WHERE p.kind = :kind AND p.name = :name AND p.code = q.code)
               ORDER BY e.published, e.code""",
            {"kind": kind, "name": name},
        ).fetchall()
        return [code for (code,) in rows]

    def _has_pending(self, key: FeedKey) -> bool:
        with self._lock:
            row = self.db.execute(
                "SELECT 1 FROM feed_pending WHERE kind = ? AND name = ? LIMIT 1", list(key)
            ).fetchone()
        return row is not None

    def position_feed(self, key: FeedKey) -> int:
        """Number the feed's entries that have no position yet, oldest first.

        Positions never change once given, so a page of positions is a stable
        archive page. Returns the next free position (the feed's size if
        nothing was ever removed).
        """
        kind, name = key
        with self._lock:
            if not self._has_pending(key):
                return self._next_position(key)
            with self.transaction() as db:
                codes = self._unpositioned(db, key)
                start = self._next_position(key)
                db.conn.executemany(
                    "INSERT INTO feed_positions (kind, name, code, seq) VALUES (?, ?, ?, ?)",
                    [(kind, name, code, start + i) for i, code in enumerate(codes)],
                )
                db.execute("DELETE FROM feed_pending WHERE kind = ? AND name = ?", [kind, name])
                if codes and start == 0:  # a feed no longer only in the queue: see feed_keys
                    db.execute(
                        """UPDATE store_versions SET version = version + 1
                           WHERE what = 'feed_keys'"""
                    )
            return start + len(codes)

    def _next_position(self, key: FeedKey) -> int:
        row = self._query(
            "SELECT coalesce(max(seq) + 1, 0) AS n FROM feed_positions WHERE kind = ? AND name = ?",
            list(key),
        )
        return int(row[0]["n"])

    def positioned_articles(self, key: FeedKey, start: int, stop: int) -> list[StoredArticle]:
        """The feed's entries with positions in [start, stop), newest position first."""
        rows = self._query(
            f"""SELECT {_ARTICLE_COLUMNS}
               FROM feed_positions p JOIN entries e ON e.code = p.code
               WHERE p.kind = ? AND p.name = ? AND p.seq >= ? AND p.seq < ?
               ORDER BY p.seq DESC""",
            [*key, start, stop],
        )
        return [_article(row) for row in rows]

    def source_meta_rows(self) -> list[SourceRow]:
        """What the publisher shows of each source (source_rows without the counts)."""
        with self._lock:
            cursor = self.db.conn.cursor()
            cursor.row_factory = sqlite3.Row
            rows: list[SourceRow] = cursor.execute(
                """SELECT id, name, url, feed_title, feed_link, feed_id, moved_to
                   FROM sources ORDER BY id"""
            ).fetchall()
        return rows

    def positioned_renders(self, key: FeedKey, start: int, stop: int) -> list[PositionedRender]:
        """The feed's entries with positions in [start, stop), newest position first,
        with what the publisher needs to pick (or redo) their cached fragments."""
        with self._lock:
            rows = self.db.execute(
                """SELECT e.code, e.updated, e.source_id, r.context, r.shown, r.atom, r.json
                   FROM feed_positions p INDEXED BY feed_positions_page
                   JOIN entries e INDEXED BY entries_shown ON e.code = p.code
                   LEFT JOIN entry_renders r ON r.code = e.code
                   WHERE p.kind = ? AND p.name = ? AND p.seq >= ? AND p.seq < ?
                   ORDER BY p.seq DESC""",
                [*key, start, stop],
            ).fetchall()
        return [
            PositionedRender(
                code=code,
                updated=_utc(updated),
                source_id=source_id,
                render=Render(context, shown, atom, json_) if atom is not None else None,
            )
            for code, updated, source_id, context, shown, atom, json_ in rows
        ]

    def articles_by_code(self, codes: Sequence[str]) -> dict[str, StoredArticle]:
        found: dict[str, StoredArticle] = {}
        for chunk, marks in _chunks(codes):
            rows = self._query(
                f"""SELECT {_ARTICLE_COLUMNS}
                   FROM entries e WHERE e.code IN ({marks})""",
                chunk,
            )
            found.update((row["code"], _article(row)) for row in rows)
        return found

    def fill_renders(
        self,
        codes: Sequence[str],
        render: Callable[[dict[str, StoredArticle]], list[tuple[str, Render]]],
    ) -> list[tuple[str, Render]]:
        """Render these entries with render() and keep the fragments, read and written
        in one transaction: a poll cannot change an entry between the two."""
        with self.transaction() as db:
            renders = render(self.articles_by_code(codes))
            db.conn.executemany(
                """INSERT OR REPLACE INTO entry_renders (code, context, shown, atom, json)
                   VALUES (?, ?, ?, ?, ?)""",
                [(code, r.context, r.shown, r.atom, r.json) for code, r in renders],
            )
        return renders

    def clear_renders(self) -> None:
        """Forget every rendered fragment (the next publish renders everything afresh)."""
        with self.transaction() as db:
            db.execute("DELETE FROM entry_renders")

    # --- what is left to publish ---

    def unpublished(self) -> dict[FeedKey, int]:
        """The feeds whose documents may not show what the store holds (a change
        committed since they were last published, by any process), each with its mark."""
        with self._lock:
            rows = self.db.conn.execute("SELECT kind, name, mark FROM feed_unpublished")
            return {(str(kind), str(name)): int(mark) for kind, name, mark in rows.fetchall()}

    def holes(self) -> dict[FeedKey, set[int]]:
        """The positions, by feed, whose entries were removed since the archive pages
        holding them were last written."""
        found: dict[FeedKey, set[int]] = {}
        with self._lock:
            rows = self.db.conn.execute("SELECT kind, name, seq FROM feed_holes").fetchall()
        for kind, name, seq in rows:
            found.setdefault((kind, name), set()).add(int(seq))
        return found

    def mark_published(
        self, marks: dict[FeedKey, int], holes: dict[FeedKey, set[int]] | None = None
    ) -> None:
        """Clear the marks (and holes) read by unpublished() (and holes()) before the
        feeds were rendered, once their files are durable; a feed marked again
        meanwhile keeps its newer mark."""
        filled = [(*key, seq) for key, seqs in (holes or {}).items() for seq in seqs]
        if not marks and not filled:
            return
        with self.transaction() as db:
            db.conn.executemany(
                "DELETE FROM feed_unpublished WHERE kind = ? AND name = ? AND mark = ?",
                [(kind, name, mark) for (kind, name), mark in marks.items()],
            )
            db.conn.executemany(
                "DELETE FROM feed_holes WHERE kind = ? AND name = ? AND seq = ?", filled
            )

    def entry_count(self) -> int:
        return int(self._query("SELECT count(*) AS n FROM entries")[0]["n"])

    def entry_sources(self, code: str) -> list[str]:
        return [
            r["source_id"]
            for r in self._query(
                "SELECT source_id FROM entry_sources WHERE code = ? ORDER BY source_id", [code]
            )
        ]


# An entry as _article reads it: its row, its tags and its categories (sorted).
_ARTICLE_COLUMNS = """e.*,
    (SELECT json_group_array(name) FROM (SELECT name FROM entry_tags t
       WHERE t.code = e.code ORDER BY name)) AS tag_names,
    (SELECT json_group_array(name) FROM (SELECT name FROM entry_categories c
       WHERE c.code = e.code ORDER BY name)) AS category_names"""

# SQLite allows a limited number of parameters per statement: long IN lists go in chunks.
_CHUNK = 500


def _chunks(values: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """Each chunk of values with its "?,?,..." placeholders."""
    for start in range(0, len(values), _CHUNK):
        chunk = list(values[start : start + _CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def carriers_of(database: Path, codes: Sequence[str]) -> dict[str, list[str]]:
    """The sources storing each of these codes in a database, read without writing or
    migrating anything (`sources check`): {} where there is no database (yet) or it
    cannot be read."""
    if not codes or not database.exists():
        return {}
    found: dict[str, list[str]] = {}
    try:
        conn = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        for chunk, marks in _chunks(list(dict.fromkeys(codes))):
            rows = conn.execute(
                f"""SELECT code, source_id FROM entry_sources WHERE code IN ({marks})
                    ORDER BY code, source_id""",
                chunk,
            )
            for code, source_id in rows:
                found.setdefault(code, []).append(source_id)
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    return found


def _open_write_lock(database: Path) -> BinaryIO | None:
    """A file beside the database that writers lock in turn. SQLite itself makes a
    writer that finds the database busy sleep and retry (for up to 100 ms a time), which
    wastes most of the time when several processes write often (poll worker processes,
    a daemon and a command); a blocking file lock hands over at once."""
    try:
        return open(database.with_name(database.name + ".write-lock"), "ab")
    except OSError:  # a read-only folder: SQLite's own locking still applies
        return None


@dataclass
class _Batch:
    failed: bool = False


@contextmanager
def _held(lock: BinaryIO | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class NewEntries:
    """The rows of one poll's new entries, written with one statement per table."""

    entries: list[tuple[Any, ...]] = field(default_factory=list)
    # (entry, source id, stamp): each one's entry_sources row, made in write()
    carried: list[tuple[EntryRecord, str, str]] = field(default_factory=list)
    categories: list[tuple[str, str]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: Source, entry: EntryRecord, decision: Decision, now: datetime) -> None:
        published, updated = decision.published or now, decision.updated or now
        stamp = iso(now)
        self.entries.append(
            (
                entry.code,
                entry.code_rule,
                entry.guid,
                entry.title,
                entry.link,
                iso(published),
                iso(updated),
                stamp,
                entry.author,
                entry.summary,
                entry.content,
                _json_list(entry.categories),
                _json_enclosures(entry.enclosures),
                source.id,
                entry.published_raw,
                entry.updated_raw,
            )
        )
        self.carried.append((entry, source.id, stamp))
        self.categories += [(entry.code, c) for c in (source.category, *entry.extra_categories)]
        self.tags += [(entry.code, tag) for tag in (*source.tags, *entry.extra_tags)]

    def write(self, conn: sqlite3.Connection) -> None:
        if not self.entries:
            return
        conn.executemany(
            """INSERT INTO entries (code, code_rule, guid, title, link, published, updated,
                 first_seen, author, summary, content, categories, enclosures, source_id,
                 published_raw, updated_raw)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            self.entries,
        )
        # Hashed only now: writing the rows left each body's UTF-8 with its str
        # (CPython keeps what sqlite3 asked for), so hashing does not encode it again.
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
        conn.executemany(
            """INSERT INTO entry_sources (code, source_id, guid, entry_hash, first_seen,
                 last_seen, raw_digest, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            links,
        )
        conn.executemany(
            "INSERT OR IGNORE INTO entry_categories (code, name) VALUES (?, ?)", self.categories
        )
        conn.executemany("INSERT OR IGNORE INTO entry_tags (code, name) VALUES (?, ?)", self.tags)
        _queue_members(conn, [row[0] for row in self.entries], links, self.categories, self.tags)


def mark_unpublished(conn: sqlite3.Connection, keys: Iterable[FeedKey]) -> None:
    """In the caller's transaction, mark these feeds as not showing it yet (see
    _migration_11): each gets the number of this change, newer than any mark a
    publisher may be holding."""
    rows = sorted(set(keys))
    if not rows:
        return
    (mark,) = conn.execute(
        """UPDATE store_versions SET version = version + 1 WHERE what = 'unpublished'
           RETURNING version"""
    ).fetchone()
    conn.executemany(
        """INSERT INTO feed_unpublished (kind, name, mark) VALUES (?, ?, ?)
           ON CONFLICT (kind, name) DO UPDATE SET mark = excluded.mark""",
        [(kind, name, mark) for kind, name in rows],
    )


def remove_entries(conn: sqlite3.Connection, codes: Sequence[str]) -> None:
    """Delete these entries in the caller's transaction; their memberships and
    positions follow by ON DELETE CASCADE. Each position is kept as a hole, so the
    archive page that listed it is written again without it (Store.holes)."""
    for chunk, marks in _chunks(codes):
        conn.execute(
            f"""INSERT OR IGNORE INTO feed_holes (kind, name, seq)
                SELECT kind, name, seq FROM feed_positions WHERE code IN ({marks})""",
            chunk,
        )
    conn.executemany("DELETE FROM entries WHERE code = ?", [(code,) for code in codes])
    # The publish queue has no foreign key (see _migration_9): one pass over it drops
    # what removed entries left there, still unnumbered.
    conn.execute("DELETE FROM feed_pending WHERE code NOT IN (SELECT code FROM entries)")


def feeds_holding(conn: sqlite3.Connection, codes: Sequence[str]) -> set[FeedKey]:
    """Every feed that lists one of these entries (the whole-store feed included)."""
    if not codes:
        return set()
    keys: set[FeedKey] = {("all", "")}
    queries = (
        ("category", "SELECT DISTINCT name FROM entry_categories WHERE code IN ({})"),
        ("tag", "SELECT DISTINCT name FROM entry_tags WHERE code IN ({})"),
        ("source", "SELECT DISTINCT source_id FROM entry_sources WHERE code IN ({})"),
    )
    for chunk, marks in _chunks(codes):
        for kind, sql in queries:
            for (name,) in conn.execute(sql.format(marks), chunk).fetchall():
                keys.add((kind, name))
    return keys


def _queue_members(
    conn: sqlite3.Connection,
    codes: Sequence[str],
    links: Sequence[tuple[Any, ...]],
    categories: Sequence[tuple[str, str]],
    tags: Sequence[tuple[str, str]],
) -> None:
    """Queue feed memberships for position_feed, in the transaction that adds them:
    new entries join "all"; each (code, source_id, ...) link, (code, category) and
    (code, tag) row joins that feed. A member already positioned is passed over
    there, so queueing one twice is harmless."""
    conn.executemany(
        "INSERT OR IGNORE INTO feed_pending (kind, name, code) VALUES (?, ?, ?)",
        [
            *(("all", "", code) for code in codes),
            *(("source", link[1], link[0]) for link in links),
            *(("category", name, code) for code, name in categories),
            *(("tag", name, code) for code, name in tags),
        ],
    )


FAILED_RESULTS = ("error", "gone")

# A source's recent polls are fixed-width records, oldest first, in one text column:
# record_polls appends one and drops the oldest past RECENT_POLLS by a concatenation
# and a substr in the statement that records the poll, with nothing to parse.
# A record: unix seconds (10 digits), a result letter, the HTTP status (3 digits,
# 000: none) and the fetch time in milliseconds (6 digits, ------: not measured).
_RECORD = 20
_RESULT_LETTERS = {"ok": "o", "not_modified": "n", "unchanged": "u", "error": "e", "gone": "g"}
_RESULTS = {letter: result for result, letter in _RESULT_LETTERS.items()}
_APPEND_POLL = f"substr(coalesce(recent_polls, '') || :recent_poll, {-RECENT_POLLS * _RECORD})"


def _recent_poll(values: dict[str, Any]) -> str:
    """A poll's record (see _RECORD) from the values record_polls was given."""
    at: datetime = values["last_poll_at"]
    status = values.get("last_http_status") or 0
    seconds = values.get("last_fetch_seconds")
    millis = "------" if seconds is None else f"{min(999_999, round(seconds * 1000)):06d}"
    letter = _RESULT_LETTERS.get(values.get("last_result") or "", "?")
    return f"{int(at.timestamp()):010d}{letter}{min(999, status):03d}{millis}"


def _recent_polls(source_id: str, stored: str | None) -> list[RecentPoll]:
    polls = []
    text = stored or ""
    for start in range(0, len(text) - _RECORD + 1, _RECORD):
        record = text[start : start + _RECORD]
        at = datetime.fromtimestamp(int(record[:10]), UTC)
        status = int(record[11:14]) or None
        seconds = None if record[14:] == "------" else int(record[14:]) / 1000
        polls.append(RecentPoll(source_id, at, _RESULTS.get(record[10], ""), status, seconds))
    return polls


def _count_new_entries(conn: sqlite3.Connection, source_id: str, now: datetime, count: int) -> None:
    conn.execute(
        """INSERT INTO poll_days (source_id, day, new_entries) VALUES (?, ?, ?)
           ON CONFLICT (source_id, day) DO UPDATE SET
             new_entries = new_entries + excluded.new_entries""",
        [source_id, iso(now)[:10], count],
    )


def _history_start(day: str) -> str:
    """The oldest UTC day still kept when `day` (YYYY-MM-DD) is today."""
    return (date.fromisoformat(day) - timedelta(days=HISTORY_DAYS)).isoformat()


def feeds_of_new(source: Source, entry: EntryRecord) -> set[FeedKey]:
    """The feeds a new entry joins: everything, its source, the source's category and
    tags, and those the rules added."""
    return {
        ("all", ""),
        ("source", source.id),
        *(("category", name) for name in (source.category, *entry.extra_categories)),
        *(("tag", name) for name in (*source.tags, *entry.extra_tags)),
    }


@functools.lru_cache(maxsize=1024)
def _json_list(values: tuple[str, ...]) -> str:
    # Remembered: the entries of a feed mostly share a few lists of categories.
    return json.dumps(list(values), ensure_ascii=False) if values else "[]"


def _json_enclosures(enclosures: Sequence[Enclosure]) -> str:
    if not enclosures:
        return "[]"
    return json.dumps([[e.url, e.type, e.length] for e in enclosures], ensure_ascii=False)


def _utc(value: str) -> datetime:
    parsed = from_iso(value)
    assert parsed is not None
    return parsed


def _article(row: dict[str, Any]) -> StoredArticle:
    published = from_iso(row["published"])
    updated = from_iso(row["updated"])
    assert published is not None and updated is not None
    return StoredArticle(
        code=row["code"],
        title=row["title"],
        link=row["link"],
        published=published,
        updated=updated,
        author=row["author"],
        summary=row["summary"],
        content=row["content"],
        categories=tuple(json.loads(row["categories"])),
        enclosures=tuple(Enclosure(u, t, n) for u, t, n in json.loads(row["enclosures"])),
        source_id=row["source_id"],
        tags=tuple(json.loads(row["tag_names"])),
        entry_categories=tuple(json.loads(row["category_names"])),
    )
