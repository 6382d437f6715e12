"""Sources and their poll state: mirrored from the config, read before each poll,
recorded after it (with its line in the status history)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aggregator.config.loader import Source
from aggregator.store.columns import STATE_COLUMNS, history_start, poll_rows, source_state
from aggregator.store.records import (
    PollRecord,
    SourceMeta,
    SourceState,
)
from aggregator.store.sqlite.connection import Connection
from aggregator.store.sqlite.rows import chunks
from aggregator.store.sqlite.status import APPEND_POLL


class Sources(Connection):
    """The sources table."""

    def sync_sources(self, sources: Iterable[Source]) -> None:
        """Mirror the config's view of each source, keeping its fetch state."""
        with self.writing() as conn:
            conn.executemany(
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
                [(source.id, source.name, source.url, source.category) for source in sources],
            )

    def enable_sources(self, source_ids: Sequence[str]) -> list[str]:
        """Lift the store's stop (410 Gone) from these sources and make them due now;
        returns the ones that were stopped."""
        with self.transaction() as db:
            stopped = []
            for chunk, marks in chunks(source_ids):
                rows = db.conn.execute(
                    f"""UPDATE sources SET disabled_reason = NULL, next_poll_at = NULL
                        WHERE id IN ({marks}) AND disabled_reason IS NOT NULL RETURNING id""",
                    chunk,
                ).fetchall()
                stopped += [source_id for (source_id,) in rows]
        return sorted(stopped)

    def source_state(self, source_id: str) -> SourceState:
        with self._lock:  # read on every poll: plain sqlite3, no row dictionaries
            row = self.conn.execute(
                f"SELECT {STATE_COLUMNS} FROM sources WHERE id = ?", [source_id]
            ).fetchone()
        return SourceState(source_id) if row is None else source_state(row)

    def source_states(self, source_ids: Sequence[str]) -> dict[str, SourceState]:
        """source_state of many sources in a few queries (a poll of many sources reads
        them all up front); sources the store does not know get a blank state."""
        states = {source_id: SourceState(source_id) for source_id in source_ids}
        with self._lock:
            for chunk, marks in chunks(source_ids):
                rows = self.conn.execute(
                    f"SELECT {STATE_COLUMNS} FROM sources WHERE id IN ({marks})", chunk
                ).fetchall()
                states.update((row[0], source_state(row)) for row in rows)
        return states

    def never_parsed(self, source_ids: Sequence[str]) -> int:
        """How many of these sources have no stored body yet (never parsed, or new)."""
        parsed = 0
        with self._lock:
            for chunk, marks in chunks(source_ids):
                parsed += self.conn.execute(
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

    def record_poll(self, source_id: str, record: PollRecord) -> None:
        """Store the outcome of a poll: validators, status, error, next poll time."""
        self.record_polls([(source_id, record)])

    def record_polls(self, polls: Sequence[tuple[str, PollRecord]]) -> None:
        """record_poll for many sources in one write transaction: one statement for
        each run of polls that set the same columns (all of a run of 304s do), in the
        order given, so a source polled twice keeps its last poll. A record that sets
        last_poll_at is a poll: the same statement appends it to the source's recent
        polls, and a failed one counts in its day (poll_days)."""
        prepared = poll_rows(polls)
        runs, failed, day = prepared.runs, prepared.failed, prepared.day
        with self.writing() as conn:  # plain sqlite3: an all-304 poll loads no sqlite-utils
            conn.executemany(
                "INSERT OR IGNORE INTO sources (id) VALUES (?)", [(i,) for i, _ in polls]
            )
            for names, rows in runs:
                assignments = ", ".join(f"{name} = :{name}" for name in names)
                if "last_poll_at" in names:
                    assignments += f", recent_polls = {APPEND_POLL}"
                conn.executemany(f"UPDATE sources SET {assignments} WHERE id = :id", rows)
            conn.executemany(
                """INSERT INTO poll_days (source_id, day, failures) VALUES (?, ?, 1)
                   ON CONFLICT (source_id, day) DO UPDATE SET failures = failures + 1""",
                failed,
            )
            if day and day != self._pruned_day:  # the first poll of a day: prune old days
                conn.execute("DELETE FROM poll_days WHERE day < ?", [history_start(day)])
                self._pruned_day = day

    def source_meta_rows(self) -> list[SourceMeta]:
        """What the publisher shows of each source (source_rows without the counts)."""
        with self._lock:
            rows = self.conn.execute(
                """SELECT id, name, url, feed_title, feed_link, feed_id, moved_to
                   FROM sources ORDER BY id"""
            ).fetchall()
        return [SourceMeta(*row) for row in rows]
