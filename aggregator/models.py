"""Plain data passed between the pipeline steps. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

_Record = TypeVar("_Record")


def evolve(record: _Record, **changes: Any) -> _Record:
    """dataclasses.replace for the plain records here, which check nothing in __init__:
    the fields are copied as they are instead of passed through __init__ again, in a
    quarter of the time (poll.with_identities does it for every entry)."""
    if not changes.keys() <= vars(record).keys():
        raise TypeError(f"no such fields: {sorted(changes.keys() - vars(record).keys())}")
    copy: _Record = object.__new__(type(record))
    vars(copy).update(vars(record), **changes)
    return copy


@dataclass(frozen=True)
class Enclosure:
    url: str
    type: str = ""
    length: int = 0


@dataclass(frozen=True)
class EntryRecord:
    """One entry as a feed gave it, normalised; aggregator.identity sets its identity."""

    guid: str
    title: str
    link: str
    published: datetime | None = None
    updated: datetime | None = None
    author: str = ""
    summary: str = ""
    content: str = ""
    categories: tuple[str, ...] = ()
    enclosures: tuple[Enclosure, ...] = ()
    code: str = ""  # the identity it is stored under (see aggregator.identity.identify)
    code_rule: str = ""  # which rule gave the identity
    # A source-scoped identity's code before identities had scopes (identity.Identity).
    legacy_code: str = ""
    # identity.fingerprint, for an entry known by its guid: the same link and content
    # under a new guid is the same article (the store looks it up among the source's).
    fingerprint: str = ""
    # Given by the config's mapping rules, stored besides the source's own.
    extra_categories: tuple[str, ...] = ()
    extra_tags: tuple[str, ...] = ()
    # The dates as the feed wrote them, kept in the store beside our reading of them
    # (which may have refused one: an impossible zone, a year 3000).
    published_raw: str = ""
    updated_raw: str = ""
    # The fast path's digest of the entry's raw XML (salted per source by poll), so a
    # later poll can skip the entry before any expensive work; "" from feedparser.
    # Not part of equality: two readings of the same entry are equal whatever path.
    raw_digest: str = field(default="", compare=False)


@dataclass(frozen=True)
class ParsedFeed:
    version: str
    title: str
    link: str
    feed_id: str
    entries: tuple[EntryRecord, ...] = ()
    ttl_minutes: int | None = None
    skip_hours: tuple[int, ...] = ()  # RSS <skipHours>, hours 0-23 UTC
    skip_days: tuple[int, ...] = ()  # RSS <skipDays>, 0 = Monday
    update_period: float | None = None  # seconds, from sy:updatePeriod / updateFrequency
    skipped: int = 0  # entries left out unread: their raw digest was already stored


@dataclass(frozen=True)
class FetchResult:
    """What a fetch brought back. body is None when the server said 304."""

    url: str
    status: int
    body: bytes | None
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    moved_to: str | None = None  # set when a permanent redirect was followed
    max_age: float | None = None  # seconds, from Cache-Control / Expires
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # how long the fetch took, redirects included

    @property
    def not_modified(self) -> bool:
        return self.body is None
