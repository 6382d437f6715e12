"""Deciding what an incoming entry means for the store. Pure functions.

One article is one row, whatever source or guid it arrives under. Each source's
own version of an entry is remembered by hash, so an entry is updated only when
the source that carries it changes it: two sources with slightly different
copies never make the entry flip-flop between them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from aggregator.models import EntryRecord


class Action(Enum):
    NEW = "new"  # first time anyone has seen this share code
    ADD_SOURCE = "add_source"  # known article, first time from this source
    UPDATE = "update"  # this source changed its copy
    SAME_COPY = "same_copy"  # this source caught up with a copy another source brought
    UNCHANGED = "unchanged"  # nothing to write


@dataclass(frozen=True)
class StoredEntry:
    code: str
    updated: datetime
    source_hashes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    action: Action
    updated: datetime | None = None  # the entry's new `updated`, for NEW and UPDATE


# Marks a hash of the current recipe; hashes stored before it are 40 hex digits.
HASH_VERSION = "2"


# json.dumps(..., ensure_ascii=False, separators=(",", ":")), without building an
# encoder for every call (that was half of it).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def entry_hash(entry: EntryRecord) -> str:
    """A fingerprint of everything a subscriber would see change: the small fields as
    JSON, the two bodies as they are, each with its length. (JSON escaping of a 3 KB
    body cost twice the SHA-1 of it.)"""
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


def decide(
    stored: StoredEntry | None,
    source_id: str,
    incoming: EntryRecord,
    incoming_hash: str,
    now: datetime,
) -> Decision:
    if stored is None:
        return Decision(Action.NEW, incoming.updated or incoming.published or now)
    previous = stored.source_hashes.get(source_id)
    if previous == incoming_hash:
        return Decision(Action.UNCHANGED)
    claimed = incoming.updated
    newer = claimed is not None and claimed > stored.updated
    # A copy some carrier already brought is no news: the entry has it or a later one.
    # Applying it again would date the entry "now", or roll it back to an older copy.
    known = incoming_hash in stored.source_hashes.values()
    if previous is None and (known or not newer):
        return Decision(Action.ADD_SOURCE)
    if known:
        return Decision(Action.SAME_COPY)
    # A real change (or a new carrier whose copy claims to be newer than the entry):
    # the feed's own date if it moved forward, else when we saw it. Claimed dates only
    # ever move the entry forward, so two differing copies never flip-flop.
    return Decision(Action.UPDATE, claimed if newer else max(now, stored.updated))
