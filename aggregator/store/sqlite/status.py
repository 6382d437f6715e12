"""The status page's rows: each source's recent polls (fixed-width records in its own
row) and daily history (poll_days), read from one snapshot; old history pruned."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from aggregator.errors import StoreError
from aggregator.store.columns import RECORD, history_start, recent_polls
from aggregator.store.records import (
    RECENT_POLLS,
    PollDay,
    StatusRows,
    iso,
)
from aggregator.store.sqlite.connection import Connection

# Appends a poll's record (aggregator.store.columns) and keeps the last RECENT_POLLS.
APPEND_POLL = f"substr(coalesce(recent_polls, '') || :recent_poll, {-RECENT_POLLS * RECORD})"


def count_new_entries(conn: sqlite3.Connection, source_id: str, now: datetime, count: int) -> None:
    conn.execute(
        """INSERT INTO poll_days (source_id, day, new_entries) VALUES (?, ?, ?)
           ON CONFLICT (source_id, day) DO UPDATE SET
             new_entries = new_entries + excluded.new_entries""",
        [source_id, iso(now)[:10], count],
    )


class Status(Connection):
    """Reading and pruning the status history."""

    def prune_history(self, now: datetime, source_ids: Iterable[str]) -> None:
        """Forget the daily history older than HISTORY_DAYS (record_polls also does so
        once a day) and all history of sources not among source_ids (no longer
        configured)."""
        kept = json.dumps(sorted(set(source_ids)))
        with self.transaction() as db:
            db.execute("DELETE FROM poll_days WHERE day < ?", [history_start(iso(now)[:10])])
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
            recent = [poll for i in chosen for poll in recent_polls(i, kept.get(i))]
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
