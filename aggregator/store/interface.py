"""The storage interface: every operation the rest of the package asks of a store.

Callers type against Storage and get one from aggregator.store.open_store; a backend
(aggregator.store.sqlite today) implements it, raises StoreError (never its driver's
errors) and passes the contract tests in tests/storage_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, Self

from aggregator.config.loader import Source
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.store.records import (
    Candidate,
    FeedKey,
    IngestResult,
    PollRecord,
    PositionedRender,
    SourceMeta,
    SourceState,
    StatusRows,
    StoredArticle,
)


class Storage(Protocol):
    """A store of sources, entries and publishing state. Every write is one
    transaction (all or nothing); errors are StoreError."""

    @property
    def database(self) -> str:
        """What open_store takes to open the same store again (in another process)."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Several writes committed as one, all or none: if any fails, the whole batch
        is rolled back and BatchFailed raised."""

    def can_write_now(self) -> bool:
        """Whether a write transaction would begin without waiting for another
        process's to end (a hint: another may begin first)."""

    def bulk_writes(self) -> AbstractContextManager[None]:
        """A long run of writes is under way (a large first poll): the backend may do its
        upkeep alongside instead of in the writers' way (SQLite copies its write-ahead
        log into the database from a thread of its own)."""

    # --- sources and poll state ---

    def sync_sources(self, sources: Iterable[Source]) -> None:
        """Mirror the config's view of each source, keeping its poll state (a changed
        URL forgets its validators, redirect, stop and Retry-After window)."""

    def enable_sources(self, source_ids: Sequence[str]) -> list[str]:
        """Lift the stop (410 Gone) from these sources and make them due now; returns
        the ones that were stopped, sorted."""

    def source_state(self, source_id: str) -> SourceState:
        """A source's poll state (a blank one for a source never stored)."""

    def source_states(self, source_ids: Sequence[str]) -> dict[str, SourceState]:
        """source_state of each of these sources."""

    def never_parsed(self, source_ids: Sequence[str]) -> int:
        """How many of these sources have no stored body yet."""

    def source_rows(self) -> list[dict[str, Any]]:
        """Every stored source's columns (times as records.iso text) and its
        entry_count, by id."""

    def record_poll(self, source_id: str, record: PollRecord) -> None:
        """Store the outcome of a poll."""

    def record_polls(self, polls: Sequence[tuple[str, PollRecord]]) -> None:
        """record_poll of each, in order, in one transaction."""

    def source_meta_rows(self) -> list[SourceMeta]:
        """What the publisher shows of each source, by id."""

    # --- status history ---

    def prune_history(self, now: datetime, source_ids: Iterable[str]) -> None:
        """Forget daily history older than HISTORY_DAYS, and all history of sources
        not among source_ids."""

    def status_rows(
        self,
        since: datetime,
        history_of: Callable[[list[dict[str, Any]]], Iterable[str]] | None = None,
    ) -> StatusRows:
        """Every source's row and the history (from since's UTC day) of those
        history_of picks from the rows (all when None), from one snapshot."""

    # --- entries ---

    def known_digests(self, source_id: str) -> dict[str, str]:
        """The raw digests of the source's stored copies, each with its code."""

    def ingest(
        self, source: Source, feed: ParsedFeed, entries: list[EntryRecord], now: datetime
    ) -> IngestResult:
        """Store one poll's entries in one transaction; returns what changed."""

    def import_articles(
        self, articles: Iterable[StoredArticle], now: datetime, code_rule: str = "import"
    ) -> tuple[int, int]:
        """Store articles read from elsewhere; returns (imported, skipped: already
        stored)."""

    def entry_count(self) -> int: ...

    def entry_sources(self, code: str) -> list[str]:
        """The sources carrying an entry, sorted."""

    def retain(
        self,
        choose: Callable[[Sequence[Candidate]], Iterable[str]],
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> tuple[list[str], set[FeedKey]]:
        """Remove the entries choose() picks, each leaving a tombstone, in one
        transaction; returns their codes (sorted) and the feeds that listed them."""

    # --- publishing ---

    def version(self, what: str) -> int:
        """A number that moves whenever `what` ("source_meta", "feed_keys") may have
        changed, by any process."""

    def feed_keys(self) -> set[FeedKey]:
        """Every feed that has at least one entry."""

    def articles(self, key: FeedKey, limit: int) -> list[StoredArticle]:
        """The newest entries of one feed, newest first, ties broken by code."""

    def articles_by_code(self, codes: Sequence[str]) -> dict[str, StoredArticle]: ...

    def position_feed(self, key: FeedKey) -> int:
        """Number the feed's entries without a position, oldest first; returns the
        next free position. Positions never change once given."""

    def positioned_articles(self, key: FeedKey, start: int, stop: int) -> list[StoredArticle]:
        """The feed's entries with positions in [start, stop), newest first."""

    def positioned_renders(self, key: FeedKey, start: int, stop: int) -> list[PositionedRender]:
        """positioned_articles' codes with their content and render cache rows."""

    def fill_renders(
        self, codes: Sequence[str], render: Callable[[dict[str, StoredArticle]], dict[str, bytes]]
    ) -> dict[str, bytes]:
        """The render cache rows render() makes of these entries (read in the same
        transaction), by code, kept in place of the ones they had; returned."""

    def clear_renders(self) -> None:
        """Forget every render cache row."""

    def set_node(self, node: str) -> None:
        """Publish as this node of a cluster, each node into its own folder: from now on
        unpublished(), holes() and mark_published() are this node's. A store only one
        daemon uses (SQLite) has nothing to keep apart and ignores it."""

    def unpublished(self) -> dict[FeedKey, int]:
        """The feeds whose documents may not show what the store holds, each with
        its mark."""

    def holes(self) -> dict[FeedKey, set[int]]:
        """The positions, by feed, whose entries were removed since their archive
        pages were last written."""

    def mark_published(
        self, marks: dict[FeedKey, int], holes: dict[FeedKey, set[int]] | None = None
    ) -> None:
        """Clear the marks (and holes) read before the feeds were written; a feed
        marked again meanwhile keeps its newer mark."""
