"""How a feed's entries are split into documents, and how their dates are shown. Pure.

RFC 5005 archived feeds: every entry of a feed has a position, given once in
the order it joined the feed (aggregator.store.sqlite). Archive page k holds the
positions [(k-1)*size, k*size). A page is archived only when it is full and
the current document would still keep at least ``keep`` entries without it,
so the set of entries of an archive page never changes; the current document
holds everything newer (between ``keep`` and ``keep + size - 1`` entries once
the feed is long enough). Walking prev-archive from the current document
therefore meets every entry exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class Paging:
    next_position: int  # one past the highest position given in this feed
    keep: int  # the current document keeps at least this many entries
    size: int  # entries per archive page

    @property
    def archived(self) -> int:
        """How many full archive pages exist (numbered 1..archived, oldest first)."""
        return max(0, self.next_position - self.keep) // self.size

    def page(self, number: int) -> tuple[int, int]:
        """Positions [start, stop) of archive page number (1-based)."""
        return ((number - 1) * self.size, number * self.size)

    @property
    def current(self) -> tuple[int, int]:
        """Positions [start, stop) of the current (subscription) document."""
        return (self.archived * self.size, self.next_position)


def pages_to_render(
    paging: Paging, exists: Iterable[int], rebuild: bool = False, holes: Iterable[int] = ()
) -> list[int]:
    """Archive pages to (re)write: missing ones, and the newest existing one onwards.

    The newest existing page is rewritten once more when a newer page appears
    (it gains its next-archive link); older pages are never touched again
    unless rebuild is asked for (after changing base_url or feed titles), or
    one of their positions is a hole (its entry removed by retention).
    """
    if rebuild:
        return list(range(1, paging.archived + 1))
    present = {n for n in exists if 1 <= n <= paging.archived}
    newest = max(present, default=1)
    emptied = {seq // paging.size + 1 for seq in holes}
    return [
        n for n in range(1, paging.archived + 1) if n >= newest or n not in present or n in emptied
    ]


def shown_updated(code: str, updated: datetime) -> datetime:
    """The atom:updated an entry shows, the same in every document.

    Feeds often date entries to the whole second (or not at all, so a batch
    shares its fetch time); two entries with the same atom:updated make the
    W3C validator warn and make readers' "newest" order arbitrary. A whole
    second gets a fixed fraction from the share code: stable across documents
    and restarts, and distinct for all practical purposes.
    """
    if updated.microsecond:
        return updated
    digest = hashlib.sha256(code.encode("utf-8")).digest()
    return updated + _MICRO * (1 + int.from_bytes(digest[:8], "big") % 999_999)


def distinct_updated(items: Iterable[tuple[str, datetime]]) -> dict[str, datetime]:
    """shown_updated for each (code, updated), made unique within one document."""
    taken: set[datetime] = set()
    result: dict[str, datetime] = {}
    for code, updated in sorted(items, key=lambda item: item[0]):
        value = shown_updated(code, updated)
        while value in taken:  # a one-in-a-million fraction clash: next microsecond
            value += _MICRO
        taken.add(value)
        result[code] = value
    return result
