"""Ingest: one poll's entries into the store in one transaction. What is stored is read
first, each entry's fate decided by aggregator.identity.dedup, and the new entries
written together at the end; also articles imported from elsewhere (posts)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from aggregator.config.loader import Source
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
from aggregator.store.columns import NewEntryRows
from aggregator.store.records import (
    IngestResult,
    StoredArticle,
    feeds_of_new,
    from_iso,
    iso,
)
from aggregator.store.sqlite.connection import Connection
from aggregator.store.sqlite.publishing import feeds_holding, mark_unpublished, queue_members
from aggregator.store.sqlite.rows import chunks, json_enclosures, json_list
from aggregator.store.sqlite.status import count_new_entries


class NewEntries(NewEntryRows):
    """The rows of one poll's new entries, written with one statement per table."""

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
        queue_members(conn, [row[0] for row in self.entries], links, self.categories, self.tags)


class Ingest(Connection):
    """Storing entries."""

    def known_digests(self, source_id: str) -> dict[str, str]:
        """The raw digests of the source's stored copies (see poll.source_salt), each
        with its share code."""
        with self._lock:
            rows = self.conn.execute(
                """SELECT raw_digest, code FROM entry_sources
                   WHERE source_id = ? AND raw_digest IS NOT NULL""",
                [source_id],
            ).fetchall()
        return dict(rows)

    def _stored(self, conn: sqlite3.Connection, codes: list[str]) -> dict[str, StoredEntry]:
        found: dict[str, StoredEntry] = {}
        for chunk, marks in chunks(codes):
            rows = conn.execute(
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

    def _tombstoned(self, conn: sqlite3.Connection, codes: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk, marks in chunks(codes):
            rows = conn.execute(f"SELECT code FROM tombstones WHERE code IN ({marks})", chunk)
            found.update(code for (code,) in rows.fetchall())
        return found

    def _resolve(
        self,
        conn: sqlite3.Connection,
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
            for code, hashed, flagged in self._legacy_copies(conn, source_id, unknown):
                legacy[code] = hashed
                if flagged:
                    recheck.add(code)
        prints = [e.fingerprint for e in unknown if e.fingerprint]
        copies = SourceCopies(legacy, self._fingerprinted(conn, source_id, prints))
        resolved = resolve_codes(entries, stored.keys(), copies)
        moved = [r.code for r, e in zip(resolved, entries, strict=True) if r.code != e.code]
        stored.update(self._stored(conn, [c for c in dict.fromkeys(moved) if c not in stored]))
        return resolved, recheck & set(moved)

    def _legacy_copies(
        self, conn: sqlite3.Connection, source_id: str, entries: list[EntryRecord]
    ) -> list[tuple[str, str | None, int]]:
        """(old code, the source's stored hash or None, recheck) of the source's old codes
        among these entries'."""
        codes = list(dict.fromkeys(e.legacy_code for e in entries if e.legacy_code))
        found = []
        for chunk, marks in chunks(codes):
            found += conn.execute(
                f"""SELECT l.code, es.entry_hash, l.recheck FROM legacy_codes l
                    LEFT JOIN entry_sources es ON es.code = l.code AND es.source_id = l.source_id
                    WHERE l.source_id = ? AND l.code IN ({marks})""",
                [source_id, *chunk],
            ).fetchall()
        return found

    def _fingerprinted(
        self, conn: sqlite3.Connection, source_id: str, prints: list[str]
    ) -> dict[str, str]:
        """fingerprint -> code of the source's stored copies with these fingerprints (the
        smallest code where several have one)."""
        found: dict[str, str] = {}
        for chunk, marks in chunks(list(dict.fromkeys(prints))):
            rows = conn.execute(
                f"""SELECT fingerprint, min(code) FROM entry_sources
                    WHERE source_id = ? AND fingerprint IN ({marks}) GROUP BY fingerprint""",
                [source_id, *chunk],
            ).fetchall()
            found.update(rows)
        return found

    def _shows_copy(self, conn: sqlite3.Connection, entry: EntryRecord) -> bool:
        """Whether the stored entry shows this copy's title, link and text."""
        row: tuple[str, ...] | None = conn.execute(
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
            json_list(entry.categories),
            json_enclosures(entry.enclosures),
        )

    def ingest(
        self, source: Source, feed: ParsedFeed, entries: list[EntryRecord], now: datetime
    ) -> IngestResult:
        """Apply one poll's entries in one transaction; returns what changed."""
        result = IngestResult()
        with self.writing() as conn:
            stored = self._stored(conn, [e.code for e in entries])
            entries, recheck = self._resolve(conn, source.id, entries, stored)
            unique = first_per_code(entries)
            removed = self._tombstoned(conn, [e.code for e in unique])
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
                    if entry.code in recheck and not self._shows_copy(conn, entry):
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
                    self._show(conn, source, entry, decision)
                if decision.action is Action.ADD_SOURCE or (
                    first_copy and decision.action is Action.SWITCH
                ):
                    result.added_source += 1
                elif decision.action is not Action.OTHER_COPY:
                    result.updated += 1
                self._link_source(conn, source, entry, hashed, now)
                if decision.action is not Action.OTHER_COPY:  # which shows nothing new
                    result.changed_feeds |= feeds_holding(conn, [entry.code])
            new.write(conn)
            if result.new + result.added_source:  # first carried by this source
                count_new_entries(conn, source.id, now, result.new + result.added_source)
            if recheck:
                conn.executemany(
                    "UPDATE legacy_codes SET recheck = 0 WHERE code = ? AND source_id = ?",
                    [(code, source.id) for code in recheck],
                )
            # Same entry, other bytes (or stored before digests existed): next time it is
            # recognised before parsing.
            conn.executemany(
                """UPDATE entry_sources SET raw_digest = ?1
                   WHERE code = ?2 AND source_id = ?3 AND raw_digest IS NOT ?1""",
                digests_to_keep,
            )
            conn.executemany(  # an old recipe's hash, once: see dedup.HASH_VERSION
                "UPDATE entry_sources SET entry_hash = ? WHERE code = ? AND source_id = ?",
                hashes_to_renew,
            )
            shown_before = conn.execute(
                "SELECT feed_title, feed_link, feed_id FROM sources WHERE id = ?", [source.id]
            ).fetchone()
            conn.execute(
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
                brought = conn.execute(
                    "SELECT code FROM entries WHERE source_id = ?", [source.id]
                ).fetchall()
                result.changed_feeds |= feeds_holding(conn, [c for (c,) in brought])
            mark_unpublished(conn, result.changed_feeds)
        return result

    def _show(
        self, conn: sqlite3.Connection, source: Source, entry: EntryRecord, decision: Decision
    ) -> None:
        """Make the entry show this copy: an edit of the shown copy (UPDATE), or another
        source's copy taking its place (SWITCH: its dates and source too)."""
        published = decision.published if decision.action is Action.SWITCH else entry.published
        assert decision.updated is not None
        conn.execute(
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
        self,
        conn: sqlite3.Connection,
        source: Source,
        entry: EntryRecord,
        hashed: str,
        now: datetime,
    ) -> None:
        stamp = iso(now)
        conn.execute(
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
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO entry_categories (code, name) VALUES (?, ?)", categories
        )
        conn.executemany("INSERT OR IGNORE INTO entry_tags (code, name) VALUES (?, ?)", tags)
        if conn.total_changes != before:  # shown with other categories or tags now
            conn.execute("DELETE FROM rendered_entries WHERE code = ?", [entry.code])
        queue_members(conn, [], [(entry.code, source.id)], categories, tags)

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
        with self.writing() as conn:
            for article in articles:
                if conn.execute("SELECT 1 FROM entries WHERE code = ?", [article.code]).fetchone():
                    skipped += 1
                    continue
                conn.execute(
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
                        json_list(article.categories),
                        json_enclosures(article.enclosures),
                        article.source_id,
                    ],
                )
                if article.source_id:
                    conn.execute(
                        """INSERT INTO entry_sources (code, source_id, guid, entry_hash,
                             first_seen, last_seen) VALUES (?, ?, '', ?, ?, ?)""",
                        [article.code, article.source_id, code_rule, iso(now), iso(now)],
                    )
                categories = [(article.code, name) for name in article.entry_categories]
                tags = [(article.code, name) for name in article.tags]
                for kind, rows in (("categories", categories), ("tags", tags)):
                    conn.executemany(
                        f"INSERT OR IGNORE INTO entry_{kind} (code, name) VALUES (?, ?)", rows
                    )
                links = [(article.code, article.source_id)] if article.source_id else []
                queue_members(conn, [article.code], links, categories, tags)
                imported_codes.append(article.code)
            mark_unpublished(conn, feeds_holding(conn, imported_codes))
        return len(imported_codes), skipped
