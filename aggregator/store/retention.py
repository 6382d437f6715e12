"""Retention: drop old entries so the database does not grow forever.

A limit is an age (``retain_for``) and/or a count per source
(``retain_entries``), set in [settings] and overridable per source. What to
drop is decided by a pure function; the cleanup then deletes those entries and
leaves a tombstone of each share code in the same transaction, so the next poll
of a feed that still lists them does not bring them back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aggregator.config.loader import Config, Settings, Source
from aggregator.store.interface import Storage
from aggregator.store.records import Candidate, FeedKey

log = logging.getLogger("aggregator.retention")

CLEANUP_INTERVAL = 24 * 3600.0  # the daemon cleans up once a day
FIRST_CLEANUP_DELAY = 60.0  # and first shortly after start, once the first polls settle


@dataclass(frozen=True)
class Policy:
    """How much one source keeps. None means no limit of that kind."""

    max_age: float | None = None  # seconds since the entry was published
    max_entries: int | None = None  # newest entries of the source

    @property
    def limited(self) -> bool:
        return self.max_age is not None or self.max_entries is not None


def default_policy(settings: Settings) -> Policy:
    return Policy(settings.retain_for, settings.retain_entries)


def policy_for(source: Source, settings: Settings) -> Policy:
    """A source's own limits, each falling back to the global one."""
    return Policy(
        source.retain_for if source.retain_for is not None else settings.retain_for,
        source.retain_entries if source.retain_entries is not None else settings.retain_entries,
    )


def _kept_by_one(entries: list[Candidate], policy: Policy, now: datetime) -> set[str]:
    """What one source keeps of the entries it carries: newest first, within both limits."""
    if not policy.limited:
        return {e.code for e in entries}
    oldest = now - timedelta(seconds=policy.max_age) if policy.max_age is not None else None
    newest_first = sorted(entries, key=lambda e: (e.published, e.code), reverse=True)
    if policy.max_entries is not None:
        newest_first = newest_first[: policy.max_entries]
    return {e.code for e in newest_first if oldest is None or e.published >= oldest}


def to_drop(
    entries: Iterable[Candidate],
    policies: Mapping[str, Policy],
    default: Policy,
    now: datetime,
) -> set[str]:
    """The share codes to remove.

    An entry carried by several sources stays while any of them keeps it.
    Sources no longer in the config (and entries with no source) follow the
    default policy.
    """
    by_source: dict[str, list[Candidate]] = {}
    for entry in entries:
        for source_id in entry.sources or ("",):
            by_source.setdefault(source_id, []).append(entry)
    kept: set[str] = set()
    everything: set[str] = set()
    for source_id, carried in by_source.items():
        everything.update(e.code for e in carried)
        kept |= _kept_by_one(carried, policies.get(source_id, default), now)
    return everything - kept


# --- the cleanup, on a store ------------------------------------------------------------


@dataclass
class CleanupResult:
    removed: list[str] = field(default_factory=list)  # share codes
    changed_feeds: set[FeedKey] = field(default_factory=set)


def _policies(config: Config) -> dict[str, Policy]:
    return {s.id: policy_for(s, config.settings) for s in config.sources}


def _any_limit(config: Config) -> bool:
    return default_policy(config.settings).limited or any(
        p.limited for p in _policies(config).values()
    )


def cleanup(
    store: Storage, config: Config, now: datetime, *, dry_run: bool = False
) -> CleanupResult:
    """Apply the config's retention limits in one transaction; returns what was removed.
    The status page's history is pruned too (old days, sources no longer configured)."""
    result = CleanupResult()
    if not dry_run:
        store.prune_history(now, [s.id for s in config.sources])
    if not _any_limit(config):
        return result
    policies, default = _policies(config), default_policy(config.settings)
    result.removed, result.changed_feeds = store.retain(
        lambda candidates: to_drop(candidates, policies, default, now), now, dry_run=dry_run
    )
    if result.removed and not dry_run:
        log.info("retention removed %d entries", len(result.removed))
    return result
