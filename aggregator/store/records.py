"""What the storage interface takes and returns: plain records, the same for every backend."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aggregator.config.loader import Source
from aggregator.models import Enclosure, EntryRecord

FeedKey = tuple[str, str]  # ("all", ""), ("category", name), ("tag", name), ("source", id)

# Each source's history for the status page: its last polls one by one, and a row per
# UTC day for this many days (older days are pruned).
RECENT_POLLS = 30
HISTORY_DAYS = 30
FAILED_RESULTS = ("error", "gone")


@functools.lru_cache(maxsize=1024)
def iso(value: datetime) -> str:
    """Fixed-width UTC text, so stored times sort as strings (isoformat: strftime's
    twin, several times faster). Remembered: an ingest writes its `now` three times
    per entry."""
    if value.tzinfo is UTC:  # most are: "+00:00" becomes "Z"
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_iso(value: str | None) -> datetime | None:
    """A time written by iso() (as source rows carry them), or None for none."""
    if not value:
        return None
    # fromisoformat reads our fixed-width form (with its Z) much faster than strptime.
    return datetime.fromisoformat(value).astimezone(UTC)


@dataclass(frozen=True)
class SourceState:
    """What a poll needs to know of a source's last polls."""

    id: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    error_count: int = 0
    next_poll_at: datetime | None = None
    moved_to: str | None = None
    disabled_reason: str | None = None
    poll_hints: str | None = None  # JSON, see aggregator.run.poll
    retry_not_before: datetime | None = None


class _Keep:
    """The value of a PollRecord field that the record leaves as stored."""

    def __repr__(self) -> str:
        return "KEEP"

    def __reduce__(self) -> str:
        return "KEEP"  # unpickled as this module's KEEP, so `is KEEP` holds in any process


KEEP: Any = _Keep()


class PollRecord(NamedTuple):
    """The outcome of one poll, as recorded in its source's state: each field set
    (None included: stored as nothing) replaces the stored value, each left at KEEP
    leaves it. A record that sets last_poll_at is a poll, counted in the source's
    recent history. A tuple: made twice per poll, and a frozen dataclass of this
    many fields takes several times as long to make."""

    last_poll_at: datetime | None = KEEP
    last_success_at: datetime | None = KEEP
    last_result: str | None = KEEP
    last_http_status: int | None = KEEP
    last_fetch_seconds: float | None = KEEP
    last_error: str | None = KEEP
    last_error_at: datetime | None = KEEP
    error_count: int = KEEP
    next_poll_at: datetime | None = KEEP
    retry_not_before: datetime | None = KEEP
    etag: str | None = KEEP
    last_modified: str | None = KEEP
    body_hash: str | None = KEEP
    moved_to: str | None = KEEP
    poll_hints: str | None = KEEP
    disabled_reason: str | None = KEEP

    def changes(self) -> dict[str, Any]:
        """The fields this record sets, by name, in declaration order."""
        return {
            name: value for name, value in zip(self._fields, self, strict=True) if value is not KEEP
        }


class PollDay(NamedTuple):
    """One source's UTC day: its failed polls, and the entries it carried first (new
    ones, and ones another source brought before)."""

    source_id: str
    day: str  # YYYY-MM-DD
    failures: int
    new_entries: int


class RecentPoll(NamedTuple):
    """One of a source's last polls, as the status page shows it."""

    source_id: str
    at: datetime
    result: str
    http_status: int | None
    fetch_seconds: float | None


@dataclass(frozen=True)
class StatusRows:
    """What Storage.status_rows read, from one snapshot."""

    sources: list[dict[str, Any]]  # every column of sources (times as iso()), entry_count
    days: list[PollDay]
    recent: list[RecentPoll]
    entries: int
    history_for: frozenset[str] | None = None  # whose history was read; None: everyone's


@dataclass
class IngestResult:
    """What one poll's ingest changed."""

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
class PositionedRender:
    """An entry at a feed position, with its row of the render cache: a blob only the
    publisher reads (aggregator.publish.renderpack), or None."""

    code: str
    updated: datetime
    source_id: str
    content: str  # the stored HTML, which cached fragments leave out (publish.shells)
    cached: bytes | None


class SourceMeta(NamedTuple):
    """What the publisher shows of a source; hashable, equal when the values are."""

    id: str
    name: str
    url: str
    feed_title: str | None
    feed_link: str | None
    feed_id: str | None
    moved_to: str | None


@dataclass(frozen=True)
class Candidate:
    """An entry as retention sees it: when it was published, which sources carry it."""

    code: str
    published: datetime
    sources: tuple[str, ...] = ()


def feeds_of_new(source: Source, entry: EntryRecord) -> set[FeedKey]:
    """The feeds a new entry joins: everything, its source, the source's category and
    tags, and those the rules added."""
    return {
        ("all", ""),
        ("source", source.id),
        *(("category", name) for name in (source.category, *entry.extra_categories)),
        *(("tag", name) for name in (*source.tags, *entry.extra_tags)),
    }
