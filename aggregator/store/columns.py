"""How the SQL backends keep records in columns, alike in each: times as iso() text,
lists as JSON text, a source's poll state, its recent polls as fixed-width records.
Pure functions over plain values."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from aggregator.config.loader import Source
from aggregator.identity.dedup import Decision
from aggregator.models import Enclosure, EntryRecord
from aggregator.store.records import (
    FAILED_RESULTS,
    HISTORY_DAYS,
    KEEP,
    PollRecord,
    RecentPoll,
    SourceState,
    StoredArticle,
    from_iso,
    iso,
)

T = TypeVar("T")

# The columns source_state reads, in its order.
STATE_COLUMNS = """id, etag, last_modified, body_hash, error_count, next_poll_at, moved_to,
    disabled_reason, poll_hints, retry_not_before"""

# A source's recent polls are fixed-width records, oldest first, in one text column:
# record_polls appends one and drops the oldest past RECENT_POLLS by a concatenation
# and a substring in the statement that records the poll, with nothing to parse.
# A record: unix seconds (10 digits), a result letter, the HTTP status (3 digits,
# 000: none) and the fetch time in milliseconds (6 digits, ------: not measured).
RECORD = 20
_RESULT_LETTERS = {"ok": "o", "not_modified": "n", "unchanged": "u", "error": "e", "gone": "g"}
_RESULTS = {letter: result for result, letter in _RESULT_LETTERS.items()}


def source_state(row: Sequence[Any]) -> SourceState:
    """A SourceState from a row of STATE_COLUMNS."""
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


def recent_poll(record: PollRecord) -> str:
    """A poll's record (see RECORD) in the form recent_polls keeps it."""
    at = record.last_poll_at
    assert at is not None
    status = _set_or(record.last_http_status, 0) or 0
    seconds = _set_or(record.last_fetch_seconds, None)
    millis = "------" if seconds is None else f"{min(999_999, round(seconds * 1000)):06d}"
    letter = _RESULT_LETTERS.get(_set_or(record.last_result, "") or "", "?")
    return f"{int(at.timestamp()):010d}{letter}{min(999, status):03d}{millis}"


def _set_or(value: T, default: T) -> T:
    return default if value is KEEP else value


def recent_polls(source_id: str, stored: str | None) -> list[RecentPoll]:
    """The polls kept in a source's recent_polls column, oldest first."""
    polls = []
    text = stored or ""
    for start in range(0, len(text) - RECORD + 1, RECORD):
        record = text[start : start + RECORD]
        at = datetime.fromtimestamp(int(record[:10]), UTC)
        status = int(record[11:14]) or None
        seconds = None if record[14:] == "------" else int(record[14:]) / 1000
        polls.append(RecentPoll(source_id, at, _RESULTS.get(record[10], ""), status, seconds))
    return polls


def history_start(day: str) -> str:
    """The oldest UTC day still kept when `day` (YYYY-MM-DD) is today."""
    return (date.fromisoformat(day) - timedelta(days=HISTORY_DAYS)).isoformat()


@functools.lru_cache(maxsize=1024)
def json_list(values: tuple[str, ...]) -> str:
    # Remembered: the entries of a feed mostly share a few lists of categories.
    return json.dumps(list(values), ensure_ascii=False) if values else "[]"


def json_enclosures(enclosures: Sequence[Enclosure]) -> str:
    if not enclosures:
        return "[]"
    return json.dumps([[e.url, e.type, e.length] for e in enclosures], ensure_ascii=False)


def utc(value: str) -> datetime:
    parsed = from_iso(value)
    assert parsed is not None
    return parsed


def article_of(row: dict[str, Any]) -> StoredArticle:
    """A StoredArticle from an entries row with its tag_names and category_names (JSON
    lists, sorted)."""
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


@dataclass
class NewEntryRows:
    """The rows of one poll's new entries, gathered for each backend to write with one
    statement per table."""

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
                json_list(entry.categories),
                json_enclosures(entry.enclosures),
                source.id,
                entry.published_raw,
                entry.updated_raw,
            )
        )
        self.carried.append((entry, source.id, stamp))
        self.categories += [(entry.code, c) for c in (source.category, *entry.extra_categories)]
        self.tags += [(entry.code, tag) for tag in (*source.tags, *entry.extra_tags)]


@dataclass
class PollRows:
    """Many polls' records as rows: runs of rows that set the same columns (one statement
    each), the failed polls by UTC day, and the latest poll's day."""

    runs: list[tuple[tuple[str, ...], list[dict[str, Any]]]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    day: str = ""


def poll_rows(polls: Sequence[tuple[str, PollRecord]]) -> PollRows:
    """The rows record_polls writes, in the order given. A record that sets last_poll_at
    is a poll: its row also carries the recent-poll record to append."""
    rows = PollRows()
    for source_id, record in polls:
        values = record.changes()
        names = tuple(values)
        row = {k: iso(v) if isinstance(v, datetime) else v for k, v in values.items()}
        row["id"] = source_id
        if "last_poll_at" in values:
            row["recent_poll"] = recent_poll(record)
            rows.day = max(rows.day, row["last_poll_at"][:10])
            if record.last_result in FAILED_RESULTS:
                rows.failed.append((source_id, row["last_poll_at"][:10]))
        if rows.runs and rows.runs[-1][0] == names:
            rows.runs[-1][1].append(row)
        else:
            rows.runs.append((names, [row]))
    return rows


# Where a feed's members are listed: (table, column) by feed kind ("all" lists every entry).
FEED_MEMBERS = {
    "category": ("entry_categories", "name"),
    "tag": ("entry_tags", "name"),
    "source": ("entry_sources", "source_id"),
}


def distinct_sql(table: str, column: str) -> str:
    """DISTINCT column by hopping along its index, one seek per value (a plain DISTINCT
    reads every row); the same SQL in SQLite and PostgreSQL."""
    return f"""WITH RECURSIVE seen(value) AS (
                  SELECT min({column}) FROM {table}
                  UNION ALL
                  SELECT (SELECT min({column}) FROM {table} WHERE {column} > seen.value)
                  FROM seen WHERE seen.value IS NOT NULL)
                SELECT value FROM seen WHERE value IS NOT NULL"""
