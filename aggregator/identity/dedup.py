"""Deciding what an incoming entry means for the store. Pure functions.

One article is one row, whatever source or guid it arrives under. Each source's
own version of an entry is remembered by hash, so an entry changes only when one of
its copies does. When several sources carry an article, one copy is shown, chosen
by rank (ranks_before): the same copies give the same entry whatever order they
arrive in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from aggregator.identity.identify import legacy_needs_same_copy
from aggregator.models import EntryRecord, evolve


class Action(Enum):
    NEW = "new"  # first time anyone has seen this identity
    ADD_SOURCE = "add_source"  # known article, first copy from this source; not shown
    UPDATE = "update"  # the source whose copy is shown changed it
    SWITCH = "switch"  # this source's copy ranks before the shown one: shown from now on
    OTHER_COPY = "other_copy"  # a copy that is not shown changed: remembered only
    UNCHANGED = "unchanged"  # nothing to write


@dataclass(frozen=True)
class StoredEntry:
    code: str
    updated: datetime
    source_hashes: dict[str, str] = field(default_factory=dict)
    published: datetime | None = None  # the shown copy's
    source_id: str = ""  # whose copy is shown


class Decision(NamedTuple):  # one for every entry of every poll: a tuple is cheapest
    action: Action
    updated: datetime | None = None  # the entry's new `updated`: NEW, UPDATE, SWITCH
    published: datetime | None = None  # the shown copy's: NEW, SWITCH


def shown_dates(entry: EntryRecord, now: datetime) -> tuple[datetime, datetime]:
    """(published, updated) as the entry shows them when this copy is shown: a missing
    date is the other one, or else when it was seen; updated is never before published."""
    published = entry.published or entry.updated or now
    updated = entry.updated or entry.published or now
    return published, max(updated, published)


def ranks_before(
    published: datetime, updated: datetime, source_id: str, shown: StoredEntry
) -> bool:
    """Whether a copy is shown rather than the shown one: the most recently updated
    copy (an edit counts as updated when it was seen, unless its feed dates it), then
    the one published first, then the one from the smallest source id. A total order
    over the copies, so the copies a poll brings give the same entry in any order."""
    if updated != shown.updated:
        return updated > shown.updated
    if shown.published is not None and published != shown.published:
        return published < shown.published
    return source_id < shown.source_id


# Marks a hash of the current recipe; hashes stored before it are 40 hex digits.
HASH_VERSION = "2"


# json.dumps(..., ensure_ascii=False, separators=(",", ":")), with one encoder made
# once instead of one per call.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def entry_hash(entry: EntryRecord) -> str:
    """A fingerprint of everything a subscriber would see change: the small fields as
    JSON, the two bodies as they are, each with its length (escaping a body as JSON
    would cost more than hashing it)."""
    small = _COMPACT_JSON.encode(
        [
            entry.title,
            entry.link,
            entry.author,
            entry.categories,
            [[e.url, e.type, e.length] for e in entry.enclosures],
            entry.published.isoformat() if entry.published else "",
            entry.updated.isoformat() if entry.updated else "",
        ]
    ).encode()
    digest = hashlib.sha1()
    for part in (small, entry.content.encode(), entry.summary.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return HASH_VERSION + digest.hexdigest()


def is_current_hash(hashed: str) -> bool:
    return hashed.startswith(HASH_VERSION) and len(hashed) == 41


def legacy_entry_hash(entry: EntryRecord) -> str:
    """The fingerprint databases stored before HASH_VERSION: everything as one JSON."""
    material = [
        entry.title,
        entry.link,
        entry.content,
        entry.summary,
        entry.author,
        list(entry.categories),
        [[e.url, e.type, e.length] for e in entry.enclosures],
        entry.published.isoformat() if entry.published else "",
        entry.updated.isoformat() if entry.updated else "",
    ]
    encoded = json.dumps(material, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha1(encoded).hexdigest()


def in_current_hashes(
    stored: StoredEntry, incoming: EntryRecord, incoming_hash: str
) -> StoredEntry:
    """The stored copies' hashes as decide compares them: an old-recipe hash that
    fingerprints the incoming copy the old way becomes its current hash; any other
    old one names a copy this reading is not, whatever the recipe."""
    if all(is_current_hash(h) for h in stored.source_hashes.values()):
        return stored
    legacy = legacy_entry_hash(incoming)
    hashes = {s: incoming_hash if h == legacy else h for s, h in stored.source_hashes.items()}
    return replace(stored, source_hashes=hashes)


def first_per_code(entries: list[EntryRecord]) -> list[EntryRecord]:
    """A feed listing one article twice (two guids, one code) counts it once: the first."""
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.code not in seen:
            seen.add(entry.code)
            unique.append(entry)
    return unique


@dataclass(frozen=True)
class SourceCopies:
    """What the store holds of one source that entries not found by identity may be."""

    # An old code (identity.Identity.legacy) the source's entries were stored under
    # -> the source's stored hash of it (None: only a tombstone is left of it).
    legacy: Mapping[str, str | None] = field(default_factory=dict)
    # A fingerprint of the source's stored copies -> the code of that copy.
    fingerprints: Mapping[str, str] = field(default_factory=dict)


def resolve_codes(
    entries: list[EntryRecord], stored: Collection[str], copies: SourceCopies
) -> list[EntryRecord]:
    """One source's entries with the code each is stored under. An entry whose identity
    is not stored may still be an article the source has: under its code from before
    identity scopes, or (known by its guid) with the same fingerprint under another
    guid, stored or earlier in this same document. A live-blog's updates share a link
    but not their titles or text, so their fingerprints differ and they stay apart."""
    resolved = []
    seen_prints: dict[str, str] = {}
    for entry in entries:
        code = entry.code
        if code not in stored:
            code = (
                _legacy(entry, copies)
                or copies.fingerprints.get(entry.fingerprint or "-")
                or seen_prints.get(entry.fingerprint or "-")
                or code
            )
        if entry.fingerprint:
            seen_prints.setdefault(entry.fingerprint, code)
        resolved.append(entry if code == entry.code else evolve(entry, code=code))
    return resolved


def _legacy(entry: EntryRecord, copies: SourceCopies) -> str | None:
    if not entry.legacy_code or entry.legacy_code not in copies.legacy:
        return None
    stored_hash = copies.legacy[entry.legacy_code]
    if (
        stored_hash is not None
        and legacy_needs_same_copy(entry.code_rule)
        and stored_hash not in (entry_hash(entry), legacy_entry_hash(entry))
    ):
        return None
    return entry.legacy_code


def decide(
    stored: StoredEntry | None,
    source_id: str,
    incoming: EntryRecord,
    incoming_hash: str,
    now: datetime,
) -> Decision:
    published, updated = shown_dates(incoming, now)
    if stored is None:
        return Decision(Action.NEW, updated, published)
    previous = stored.source_hashes.get(source_id)
    if previous == incoming_hash:
        return Decision(Action.UNCHANGED)
    if previous is not None:
        # The source changed its copy: an edit is dated by the feed if it moved the date
        # forward, else when we saw it; a copy another carrier already brought is no news.
        claimed = incoming.updated
        if claimed is not None and claimed > stored.updated:
            updated = claimed
        elif incoming_hash in stored.source_hashes.values():
            updated = stored.updated
        else:
            updated = max(now, stored.updated)
        if source_id == stored.source_id:
            return Decision(Action.UPDATE, updated)
    if ranks_before(published, updated, source_id, stored):
        return Decision(Action.SWITCH, updated, published)
    return Decision(Action.ADD_SOURCE if previous is None else Action.OTHER_COPY)
