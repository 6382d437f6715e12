"""Publishing state: the feeds and their members, stable positions (archive pages),
the render cache, and which feeds are left to publish."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aggregator.store.columns import FEED_MEMBERS, distinct_sql
from aggregator.store.records import FeedKey, PositionedRender, StoredArticle
from aggregator.store.sqlite.connection import Connection
from aggregator.store.sqlite.rows import ARTICLE_COLUMNS, article_of, chunks, utc

if TYPE_CHECKING:
    import sqlite_utils


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
    archive page that listed it is written again without it (SqliteStore.holes)."""
    for chunk, marks in chunks(codes):
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
    for chunk, marks in chunks(codes):
        for kind, sql in queries:
            for (name,) in conn.execute(sql.format(marks), chunk).fetchall():
                keys.add((kind, name))
    return keys


def queue_members(
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


class Publishing(Connection):
    """What the publisher reads and keeps."""

    def version(self, what: str) -> int:
        """A number that moves whenever `what` ("source_meta": what source_meta_rows
        reads; "feed_keys": the feeds that positions were given in) may have changed,
        by any process."""
        with self._lock:
            row = self.conn.execute(
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
            queued = self.conn.execute(
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
        """DISTINCT column by hopping along its index (columns.distinct_sql)."""
        with self._lock:
            rows = self.conn.execute(distinct_sql(table, column)).fetchall()
        return [value for (value,) in rows]

    def articles(self, key: FeedKey, limit: int) -> list[StoredArticle]:
        """The newest entries of one feed, newest first, ties broken by code."""
        kind, name = key
        where, params = ("", []) if kind == "all" else self._membership(*FEED_MEMBERS[kind], name)
        rows = self._query(
            f"""SELECT {ARTICLE_COLUMNS}
               FROM entries e {where}
               ORDER BY e.published DESC, e.code LIMIT ?""",
            [*params, limit],
        )
        return [article_of(row) for row in rows]

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
        """The feed's members without a position, oldest first (queued by queue_members
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
            row = self.conn.execute(
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
            f"""SELECT {ARTICLE_COLUMNS}
               FROM feed_positions p JOIN entries e ON e.code = p.code
               WHERE p.kind = ? AND p.name = ? AND p.seq >= ? AND p.seq < ?
               ORDER BY p.seq DESC""",
            [*key, start, stop],
        )
        return [article_of(row) for row in rows]

    def positioned_renders(self, key: FeedKey, start: int, stop: int) -> list[PositionedRender]:
        """The feed's entries with positions in [start, stop), newest position first,
        with their content and render cache rows."""
        with self._lock:
            rows = self.conn.execute(
                """SELECT e.code, e.updated, e.source_id, e.content, r.pack
                   FROM feed_positions p INDEXED BY feed_positions_page
                   JOIN entries e INDEXED BY entries_shown ON e.code = p.code
                   LEFT JOIN rendered_entries r ON r.code = e.code
                   WHERE p.kind = ? AND p.name = ? AND p.seq >= ? AND p.seq < ?
                   ORDER BY p.seq DESC""",
                [*key, start, stop],
            ).fetchall()
        return [
            PositionedRender(code, utc(updated), source_id, content, packed)
            for code, updated, source_id, content, packed in rows
        ]

    def articles_by_code(self, codes: Sequence[str]) -> dict[str, StoredArticle]:
        found: dict[str, StoredArticle] = {}
        for chunk, marks in chunks(codes):
            rows = self._query(
                f"""SELECT {ARTICLE_COLUMNS}
                   FROM entries e WHERE e.code IN ({marks})""",
                chunk,
            )
            found.update((row["code"], article_of(row)) for row in rows)
        return found

    def fill_renders(
        self, codes: Sequence[str], render: Callable[[dict[str, StoredArticle]], dict[str, bytes]]
    ) -> dict[str, bytes]:
        """The render cache rows render() makes of these entries, kept, read and
        written in one transaction: a poll cannot change an entry between the two."""
        with self.transaction() as db:
            rows = render(self.articles_by_code(codes))
            db.conn.executemany(
                "INSERT OR REPLACE INTO rendered_entries (code, pack) VALUES (?, ?)",
                list(rows.items()),
            )
        return rows

    def clear_renders(self) -> None:
        """Forget every rendered fragment (the next publish renders everything afresh)."""
        with self.transaction() as db:
            db.execute("DELETE FROM rendered_entries")

    # --- what is left to publish ---

    def set_node(self, node: str) -> None:
        """One daemon publishes an SQLite store (DaemonLock): no nodes to keep apart."""

    def unpublished(self) -> dict[FeedKey, int]:
        """The feeds whose documents may not show what the store holds (a change
        committed since they were last published, by any process), each with its mark."""
        with self._lock:
            rows = self.conn.execute("SELECT kind, name, mark FROM feed_unpublished")
            return {(str(kind), str(name)): int(mark) for kind, name, mark in rows.fetchall()}

    def holes(self) -> dict[FeedKey, set[int]]:
        """The positions, by feed, whose entries were removed since the archive pages
        holding them were last written."""
        found: dict[FeedKey, set[int]] = {}
        with self._lock:
            rows = self.conn.execute("SELECT kind, name, seq FROM feed_holes").fetchall()
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
