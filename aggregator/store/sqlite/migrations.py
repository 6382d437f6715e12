"""Upgrade-only steps for databases made by earlier versions, one per schema version.

A new database is made at the current version from schema.py; these bring an older
one, whatever its version, to the same schema (tests/test_store_schema.py holds the
two to each other).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aggregator.identity.identify import content_fingerprint, legacy_scoped
from aggregator.store.sqlite.rows import chunks
from aggregator.store.sqlite.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import sqlite_utils


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
# it may have changed (see SqliteStore.version): unchanged, the publisher keeps its copy.
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
    # Feeds that appear are found by SqliteStore.feed_keys among the queued members, and
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
      whose entry is gone is passed over where the queue is read (SqliteStore.feed_keys,
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
    are durable (see SqliteStore.unpublished): a publish cut short by a kill is finished by
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
    # even one that polls whether due or not (pacing.hold).
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
    for chunk, marks in chunks(list(owners)):
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


def _migration_15(db: sqlite_utils.Database) -> None:
    """Rendered fragments keyed by output format (aggregator.publish.formats) rather than
    one column per format, so a new format needs no migration. The Atom and JSON Feed
    fragments rendered before are kept; the triggers that drop an entry's fragments
    when it changes move to the new table."""
    db.execute(
        """CREATE TABLE entry_fragments (
            code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
            format TEXT NOT NULL,
            context TEXT NOT NULL,
            shown TEXT NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (code, format)
        )"""
    )
    for column in ("atom", "json"):
        db.execute(
            f"""INSERT INTO entry_fragments (code, format, context, shown, body)
                SELECT code, '{column}', context, shown, {column} FROM entry_renders"""
        )
    for trigger in (
        "entries_renders",
        "entry_categories_renders_delete",
        "entry_tags_renders_delete",
    ):
        db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    db.execute("DROP TABLE entry_renders")
    db.execute(
        """CREATE TRIGGER entries_renders AFTER UPDATE ON entries BEGIN
            DELETE FROM entry_fragments WHERE code IN (OLD.code, NEW.code);
        END"""
    )
    for table in ("entry_categories", "entry_tags"):
        db.execute(
            f"""CREATE TRIGGER {table}_renders_delete AFTER DELETE ON {table}
                BEGIN DELETE FROM entry_fragments WHERE code = OLD.code; END"""
        )


def _migration_16(db: sqlite_utils.Database) -> None:
    """Each entry's fragments packed in one row, without the article's HTML
    (aggregator.publish.renderpack, aggregator.publish.shells). The fragments cached
    before hold the HTML: dropped, the next publish renders them again."""
    for trigger in (
        "entries_renders",
        "entry_categories_renders_delete",
        "entry_tags_renders_delete",
    ):
        db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    db.execute("DROP TABLE entry_fragments")
    db.execute(
        """CREATE TABLE rendered_entries (
            code TEXT PRIMARY KEY REFERENCES entries(code) ON DELETE CASCADE,
            pack BLOB NOT NULL
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TRIGGER entries_renders AFTER UPDATE ON entries BEGIN
            DELETE FROM rendered_entries WHERE code IN (OLD.code, NEW.code);
        END"""
    )
    for table in ("entry_categories", "entry_tags"):
        db.execute(
            f"""CREATE TRIGGER {table}_renders_delete AFTER DELETE ON {table}
                BEGIN DELETE FROM rendered_entries WHERE code = OLD.code; END"""
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
    _migration_15,
    _migration_16,
)
if len(MIGRATIONS) != SCHEMA_VERSION:
    raise AssertionError("schema.SCHEMA_VERSION is not the number of the last migration")
