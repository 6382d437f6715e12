"""The PostgreSQL schema: numbered migrations, each a list of statements.

Migration 1 is the SQLite schema as its migration 14 leaves it, table for table and
column for column (so `aggregator migrate-store` copies rows as they are; migration 3
follows SQLite's 15). Times stay
fixed-width UTC text (sqlite.iso), as in SQLite: they sort as text, and a copy between
the two stores keeps every byte the publisher renders from. The applied version is in
store_schema; a node migrates under an advisory lock, so nodes starting together do
not both migrate.
"""

from __future__ import annotations

from collections.abc import Sequence

# The advisory lock key held while migrating (any constant no other lock uses).
MIGRATION_LOCK = 0x61677231  # "agr1"

_SOURCES = """CREATE TABLE sources (
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
    poll_hints TEXT,
    last_fetch_seconds DOUBLE PRECISION,
    recent_polls TEXT,
    retry_not_before TEXT
)"""

_ENTRIES = """CREATE TABLE entries (
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
    published_raw TEXT,
    updated_raw TEXT
)"""

_ENTRY_SOURCES = """CREATE TABLE entry_sources (
    code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
    source_id TEXT NOT NULL,
    guid TEXT NOT NULL DEFAULT '',
    entry_hash TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    raw_digest TEXT,
    fingerprint TEXT,
    PRIMARY KEY (code, source_id)
)"""


def _membership(kind: str) -> list[str]:
    return [
        f"""CREATE TABLE entry_{kind} (
            code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
            name TEXT NOT NULL,
            PRIMARY KEY (code, name)
        )""",
        f"CREATE INDEX entry_{kind}_name ON entry_{kind} (name, code)",
    ]


# What the publisher shows of a source: a change to one of these moves 'source_meta'.
SOURCE_SHOWN = ("name", "url", "feed_title", "feed_link", "feed_id", "moved_to")

_VERSIONS = [
    """CREATE TABLE store_versions (
        what TEXT PRIMARY KEY,
        version BIGINT NOT NULL DEFAULT 0
    )""",
    """INSERT INTO store_versions (what)
       VALUES ('source_meta'), ('feed_keys'), ('unpublished')""",
    # Marks of unpublished feeds come from a sequence: taking one never waits for
    # another node's transaction (see PostgresStore.mark_unpublished).
    "CREATE SEQUENCE unpublished_marks",
    """CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         UPDATE store_versions SET version = version + 1 WHERE what = TG_ARGV[0];
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER sources_shown_insert AFTER INSERT OR DELETE ON sources
       FOR EACH ROW EXECUTE FUNCTION bump_version('source_meta')""",
    f"""CREATE TRIGGER sources_shown_update AFTER UPDATE OF {", ".join(SOURCE_SHOWN)}
        ON sources FOR EACH ROW
        WHEN ({" OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in SOURCE_SHOWN)})
        EXECUTE FUNCTION bump_version('source_meta')""",
    # A feed goes away only with its last entry (memberships follow by cascade).
    """CREATE TRIGGER entries_gone AFTER DELETE ON entries
       FOR EACH STATEMENT EXECUTE FUNCTION bump_version('feed_keys')""",
]

_RENDERS = [
    """CREATE TABLE entry_renders (
        code TEXT PRIMARY KEY REFERENCES entries(code) ON DELETE CASCADE,
        context TEXT NOT NULL,
        shown TEXT NOT NULL,
        atom BYTEA NOT NULL,
        json BYTEA NOT NULL
    )""",
    # An edited entry, or one that loses a category or tag, is rendered again.
    """CREATE FUNCTION drop_render() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'UPDATE' THEN
           DELETE FROM entry_renders WHERE code IN (OLD.code, NEW.code);
         ELSE
           DELETE FROM entry_renders WHERE code = OLD.code;
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER entries_renders AFTER UPDATE ON entries
       FOR EACH ROW EXECUTE FUNCTION drop_render()""",
    """CREATE TRIGGER entry_categories_renders_delete AFTER DELETE ON entry_categories
       FOR EACH ROW EXECUTE FUNCTION drop_render()""",
    """CREATE TRIGGER entry_tags_renders_delete AFTER DELETE ON entry_tags
       FOR EACH ROW EXECUTE FUNCTION drop_render()""",
]

_FEEDS = [
    """CREATE TABLE feed_positions (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        PRIMARY KEY (kind, name, code)
    )""",
    # A document's page of positions read from the index alone.
    "CREATE UNIQUE INDEX feed_positions_seq ON feed_positions (kind, name, seq) INCLUDE (code)",
    "CREATE INDEX feed_positions_code ON feed_positions (code)",
    """CREATE TABLE feed_pending (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        code TEXT NOT NULL,
        PRIMARY KEY (kind, name, code)
    )""",
    """CREATE TABLE feed_unpublished (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        mark BIGINT NOT NULL,
        PRIMARY KEY (kind, name)
    )""",
    """CREATE TABLE feed_holes (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (kind, name, seq)
    )""",
]

_HISTORY = [
    """CREATE TABLE tombstones (
        code TEXT PRIMARY KEY,
        source_id TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL DEFAULT '',
        published TEXT,
        removed_at TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE poll_days (
        source_id TEXT NOT NULL,
        day TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        new_entries INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source_id, day)
    )""",
    # Only a database copied from an SQLite one made before identity scopes has any
    # (see the SQLite store's migration 14).
    """CREATE TABLE legacy_codes (
        code TEXT NOT NULL,
        source_id TEXT NOT NULL,
        recheck INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (code, source_id)
    )""",
]

_MIGRATION_1 = [
    _SOURCES,
    _ENTRIES,
    _ENTRY_SOURCES,
    "CREATE INDEX entry_sources_source ON entry_sources (source_id, code)",
    """CREATE INDEX entry_sources_fingerprint ON entry_sources (source_id, fingerprint)
       WHERE fingerprint IS NOT NULL""",
    "CREATE INDEX entries_source ON entries (source_id)",
    *_membership("categories"),
    *_membership("tags"),
    *_VERSIONS,
    *_RENDERS,
    *_FEEDS,
    *_HISTORY,
]

_MIGRATION_2 = [
    # The nodes of a cluster (aggregator.run.cluster): each one's heartbeat and the
    # polls it has in flight, for `aggregator status` and /healthz.
    """CREATE TABLE cluster_nodes (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        polls_in_flight INTEGER NOT NULL DEFAULT 0,
        config_digest TEXT NOT NULL DEFAULT '',
        stopped_at TEXT
    )""",
    # The config the cluster polls by: one row, the accepted file's digest (see
    # aggregator.run.cluster: a node whose file differs takes no polls).
    """CREATE TABLE cluster_config (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        accepted_at TEXT NOT NULL,
        accepted_by TEXT NOT NULL DEFAULT ''
    )""",
    # Each node publishes into its own folder: what it has published of each feed (the
    # feed's mark when it last wrote it) and which holes it has filled, so a change
    # committed by any node is published by every node (PostgresStore.set_node).
    """CREATE TABLE node_published (
        node TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        mark BIGINT NOT NULL,
        PRIMARY KEY (node, kind, name)
    )""",
    """CREATE TABLE node_holes (
        node TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (node, kind, name, seq)
    )""",
]


_MIGRATION_3 = [
    # Rendered fragments keyed by output format (aggregator.publish.formats), as the
    # SQLite store's migration 15: a new format needs no migration. The Atom and JSON
    # Feed fragments are kept; drop_render() now empties the new table.
    """CREATE TABLE entry_fragments (
        code TEXT NOT NULL REFERENCES entries(code) ON DELETE CASCADE,
        format TEXT NOT NULL,
        context TEXT NOT NULL,
        shown TEXT NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (code, format)
    )""",
    """INSERT INTO entry_fragments (code, format, context, shown, body)
       SELECT code, 'atom', context, shown, atom FROM entry_renders
       UNION ALL SELECT code, 'json', context, shown, json FROM entry_renders""",
    "DROP TABLE entry_renders",
    """CREATE OR REPLACE FUNCTION drop_render() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'UPDATE' THEN
           DELETE FROM entry_fragments WHERE code IN (OLD.code, NEW.code);
         ELSE
           DELETE FROM entry_fragments WHERE code = OLD.code;
         END IF;
         RETURN NULL;
       END $$""",
]


_MIGRATION_4 = [
    # Each entry's fragments packed in one row without the article's HTML, as the
    # SQLite store's migration 16 (aggregator.publish.renderpack, aggregator.publish.shells);
    # those cached before hold the HTML and are dropped.
    "DROP TABLE entry_fragments",
    """CREATE TABLE rendered_entries (
        code TEXT PRIMARY KEY REFERENCES entries(code) ON DELETE CASCADE,
        pack BYTEA NOT NULL
    )""",
    """CREATE OR REPLACE FUNCTION drop_render() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'UPDATE' THEN
           DELETE FROM rendered_entries WHERE code IN (OLD.code, NEW.code);
         ELSE
           DELETE FROM rendered_entries WHERE code = OLD.code;
         END IF;
         RETURN NULL;
       END $$""",
]


# The slugs worked out for names without a pinned one (aggregator.store.postgres.slugs),
# which an SQLite store keeps in a file beside its database. Made by the first command
# that keeps one, if that comes before the store is made (`aggregator config check`).
KNOWN_SLUGS = """CREATE TABLE IF NOT EXISTS known_slugs (
        name TEXT PRIMARY KEY,
        slug TEXT NOT NULL
    )"""

_MIGRATION_5 = [KNOWN_SLUGS]


def bytewise(statements: Sequence[str]) -> list[str]:
    """Text columns compare byte by byte (collation "C"), as SQLite's do: the same
    order of codes, ids and names in both stores, whatever the server's locale, and
    so the same published bytes."""
    return [
        s.replace(" TEXT", ' TEXT COLLATE "C"') if s.startswith("CREATE TABLE") else s
        for s in statements
    ]


MIGRATIONS: Sequence[Sequence[str]] = (
    bytewise(_MIGRATION_1),
    bytewise(_MIGRATION_2),
    bytewise(_MIGRATION_3),
    bytewise(_MIGRATION_4),
    bytewise(_MIGRATION_5),
)
SCHEMA_VERSION = len(MIGRATIONS)

# The tables a copy between stores carries, parents before children (foreign keys).
TABLES = (
    "sources",
    "entries",
    "entry_sources",
    "entry_categories",
    "entry_tags",
    "feed_positions",
    "feed_pending",
    "feed_unpublished",
    "feed_holes",
    "rendered_entries",
    "tombstones",
    "poll_days",
    "legacy_codes",
    "store_versions",
)
