"""Entry fragments as documents hold them (content written back), kept in memory by a
publisher for the entries it meets again: the current pages of the big feeds, published
again with every new entry, and one entry in several feeds of one publish.

Each is kept with the render cache row it came from and the context and shown time it
was made for, and is used only while those three still match: a changed entry has a
new row (or none). Bounded by bytes, the least recently used dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

LIMIT = 16 * 1024 * 1024  # bytes of fragments a publisher keeps
_OVERHEAD = 200  # bytes a kept fragment costs besides its own


class AssembledFragments:
    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._size = 0
        self._lock = threading.Lock()  # publishes may run on more than one thread
        self._kept: OrderedDict[tuple[str, str], tuple[bytes, tuple[str, str], bytes]] = (
            OrderedDict()
        )

    def get(self, code: str, fmt: str, cached: bytes | None, want: tuple[str, str]) -> bytes | None:
        """The fragment kept for this entry in this format, if it was assembled from
        this cache row for this (context, shown time)."""
        with self._lock:
            kept = self._kept.get((code, fmt))
            if kept is None or cached is None or kept[0] != cached or kept[1] != want:
                return None
            self._kept.move_to_end((code, fmt))
            return kept[2]

    def put(
        self, code: str, fmt: str, cached: bytes | None, want: tuple[str, str], fragment: bytes
    ) -> None:
        if cached is None or not self._limit:
            return
        with self._lock:
            old = self._kept.pop((code, fmt), None)
            if old is not None:
                self._size -= len(old[2]) + _OVERHEAD
            self._kept[(code, fmt)] = (cached, want, fragment)
            self._size += len(fragment) + _OVERHEAD
            while self._size > self._limit and self._kept:
                _, (_, _, dropped) = self._kept.popitem(last=False)
                self._size -= len(dropped) + _OVERHEAD
