"""Retention's reads and writes: every entry as a candidate, and the removal of those
chosen, each leaving a tombstone, in one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from aggregator.store.records import Candidate, FeedKey, from_iso, iso
from aggregator.store.sqlite.connection import Connection
from aggregator.store.sqlite.publishing import feeds_holding, mark_unpublished, remove_entries


class Retention(Connection):
    """Dropping old entries."""

    def retain(
        self,
        choose: Callable[[Sequence[Candidate]], Iterable[str]],
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> tuple[list[str], set[FeedKey]]:
        """Remove the entries choose() picks among all of them, each leaving a tombstone
        (so a later poll does not bring it back), in one transaction; returns their
        codes, sorted, and the feeds that listed them. A dry run removes nothing and
        returns no feeds."""
        with self.transaction() as db:
            rows = db.execute(
                """SELECT e.code, e.published, e.title, e.source_id,
                          (SELECT json_group_array(source_id) FROM entry_sources es
                            WHERE es.code = e.code) AS carriers
                   FROM entries e"""
            ).fetchall()
            candidates = []
            details: dict[str, tuple[str, str, str]] = {}
            for code, published, title, source_id, carriers in rows:
                when = from_iso(published)
                assert when is not None
                candidates.append(Candidate(code, when, tuple(sorted(json.loads(carriers)))))
                details[code] = (source_id, title, published)
            removed = sorted(set(choose(candidates)))
            if dry_run or not removed:
                return removed, set()
            changed = feeds_holding(db.conn, removed)
            mark_unpublished(db.conn, changed)
            db.conn.executemany(
                """INSERT OR REPLACE INTO tombstones
                     (code, source_id, title, published, removed_at, reason)
                   VALUES (?, ?, ?, ?, ?, 'retention')""",
                [(code, *details[code], iso(now)) for code in removed],
            )
            remove_entries(db.conn, removed)
        return removed, changed
