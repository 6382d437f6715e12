"""The current schema, in one place: a new database is made from it at once.

migrations.py brings a database made by an earlier version to this same schema
(tests/test_store_schema.py compares the two). A change to the schema is made here
and as a new migration, together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

# The number of migrations.py's last migration: PRAGMA user_version of a database made
# from DDL (migrations.py checks that the two agree).
SCHEMA_VERSION = 16


DDL = """
-- Each configured source: what the config says, what its feed says, its poll state.
CREATE TABLE sources (
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
    next_poll_at TEXT, moved_to TEXT, disabled_reason TEXT,
    poll_hints TEXT,  -- the feed's own polling hints, JSON (aggregator.run.poll)
    last_fetch_seconds REAL,
    recent_polls TEXT,  -- the last RECENT_POLLS polls, fixed-width records (status.py)
    retry_not_before TEXT  -- the end of a Retry-After window
);

-- One row per article: the copy it shows (see aggregator.identity.dedup).
CREATE TABLE entries (
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
    source_id TEXT NOT NULL,
    published_raw TEXT, updated_raw TEXT  -- the dates as the feed wrote them
);
-- What a feed page shows of each entry, read from the index alone.
CREATE INDEX entries_shown ON entries(code, updated, source_id);

-- Each source carrying an entry, with the digests that recognise its copy.
CREATE TABLE entry_sources (
    code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
    source_id TEXT NOT NULL,
    guid TEXT NOT NULL DEFAULT '',
    entry_hash TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    raw_digest TEXT, fingerprint TEXT,
    PRIMARY KEY (code, source_id)
) WITHOUT ROWID;
CREATE INDEX entry_sources_source ON entry_sources(source_id, code);
CREATE INDEX entry_sources_fingerprint ON entry_sources(source_id, fingerprint)
    WHERE fingerprint IS NOT NULL;

CREATE TABLE entry_categories (
    code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (code, name)
) WITHOUT ROWID;
CREATE INDEX entry_categories_name ON entry_categories(name, code);

CREATE TABLE entry_tags (
    code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (code, name)
) WITHOUT ROWID;
CREATE INDEX entry_tags_name ON entry_tags(name, code);

-- Codes removed by retention, so a later poll never brings them back.
CREATE TABLE tombstones (
    code TEXT PRIMARY KEY,
    source_id TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    published TEXT,
    removed_at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);

-- Codes of a database made before identities had scopes, each kept for the source
-- that first stored it (migration 14).
CREATE TABLE legacy_codes (
    code TEXT NOT NULL,
    source_id TEXT NOT NULL,
    recheck INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (code, source_id)
) WITHOUT ROWID;

-- Each feed numbers its entries in the order they joined it (RFC 5005 archive pages).
CREATE TABLE feed_positions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    PRIMARY KEY (kind, name, code)
);
CREATE UNIQUE INDEX feed_positions_seq ON feed_positions(kind, name, seq);
CREATE INDEX feed_positions_page ON feed_positions(kind, name, seq, code);

-- Feed members still without a position, queued by the statements that add them.
CREATE TABLE feed_pending (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    code TEXT NOT NULL,
    PRIMARY KEY (kind, name, code)
) WITHOUT ROWID;

-- Feeds whose published documents do not show what the store holds yet, each with
-- the number of the change that marked it; positions whose entries were removed.
CREATE TABLE feed_unpublished (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    mark INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE feed_holes (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (kind, name, seq)
) WITHOUT ROWID;

-- Each entry's rendered fragments in the output formats (aggregator.publish.formats),
-- packed in one blob only the publisher reads (aggregator.publish.renderpack); a
-- change to the entry or its categories or tags drops them.
CREATE TABLE rendered_entries (
    code TEXT PRIMARY KEY REFERENCES entries(code) ON DELETE CASCADE,
    pack BLOB NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER entries_renders AFTER UPDATE ON entries BEGIN
    DELETE FROM rendered_entries WHERE code IN (OLD.code, NEW.code);
END;
CREATE TRIGGER entry_categories_renders_delete AFTER DELETE ON entry_categories
    BEGIN DELETE FROM rendered_entries WHERE code = OLD.code; END;
CREATE TRIGGER entry_tags_renders_delete AFTER DELETE ON entry_tags
    BEGIN DELETE FROM rendered_entries WHERE code = OLD.code; END;

-- Numbers that move when what the publisher reads whole may have changed: the
-- sources' shown metadata, the set of feeds, the marks of feed_unpublished.
CREATE TABLE store_versions (
    what TEXT PRIMARY KEY,
    version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO store_versions (what) VALUES ('source_meta'), ('feed_keys'), ('unpublished');
CREATE TRIGGER sources_shown_insert AFTER INSERT ON sources BEGIN
    UPDATE store_versions SET version = version + 1 WHERE what = 'source_meta';
END;
CREATE TRIGGER sources_shown_delete AFTER DELETE ON sources BEGIN
    UPDATE store_versions SET version = version + 1 WHERE what = 'source_meta';
END;
CREATE TRIGGER sources_shown_update
    AFTER UPDATE OF name, url, feed_title, feed_link, feed_id, moved_to ON sources
    WHEN OLD.name IS NOT NEW.name OR OLD.url IS NOT NEW.url
      OR OLD.feed_title IS NOT NEW.feed_title OR OLD.feed_link IS NOT NEW.feed_link
      OR OLD.feed_id IS NOT NEW.feed_id OR OLD.moved_to IS NOT NEW.moved_to
BEGIN
    UPDATE store_versions SET version = version + 1 WHERE what = 'source_meta';
END;
-- A feed goes away only with its last entry (memberships follow by cascade).
CREATE TRIGGER entries_gone AFTER DELETE ON entries BEGIN
    UPDATE store_versions SET version = version + 1 WHERE what = 'feed_keys';
END;

-- Each source's failed polls and first-carried entries per UTC day (status page).
CREATE TABLE poll_days (
    source_id TEXT NOT NULL,
    day TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    new_entries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, day)
) WITHOUT ROWID;
"""


def statements(ddl: str = DDL) -> Iterator[str]:
    """The DDL's statements one by one (executescript would commit the transaction
    they are made in)."""
    pending = ""
    for line in ddl.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""


def create(conn: sqlite3.Connection) -> None:
    """Make every table, index and trigger of an empty database, in the caller's
    transaction."""
    for statement in statements():
        conn.execute(statement)
