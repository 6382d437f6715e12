"""The bytes of bodies a process's fetches may hold at once (the max_bytes_in_flight
setting), so many large answers at the same time cannot add up past it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class BodyBudget:
    """Shared by the fetches of one Fetcher. A fetch takes bytes as its body's pieces
    arrive and gives them all back when it ends (or, inside Fetcher.holding(), when
    its caller is done with the body). While the budget is spent, a fetch waits for
    room before reading on, except the one that has held bytes longest (or, while that
    one waits for a host's slot, the next): it never waits, so fetches always move on,
    and what is held at once stays near the budget (beyond it by at most what fetches
    read between two looks at it)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._held: dict[object, int] = {}  # holder -> bytes, oldest holder first
        self._changed = threading.Condition()
        # Holders waiting for something another fetch may hold (a host's slot).
        self._aside: set[object] = set()
        # Holders turned away without waiting (fetch_many pauses their transfers).
        self.refused: set[object] = set()
        self.peak = 0  # the most held at once
        self.turned_away = 0  # times a holder had to wait for room

    @property
    def used(self) -> int:
        return self._used

    def _has_room(self, holder: object) -> bool:
        if self._used < self.total:
            return True
        aside = self._aside
        first = next((held for held in self._held if held not in aside), None)
        return first is None or first is holder

    @contextlib.contextmanager
    def standing_aside(self, holder: object) -> Iterator[None]:
        """While the holder waits for a host's slot, which a fetch waiting for room may
        hold, the right never to wait passes to the next holder (to every fetch, if no
        other holds bytes): the two would otherwise wait for each other."""
        with self._changed:
            self._aside.add(holder)
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._aside.discard(holder)

    def room_for(self, holder: object) -> bool:
        """Whether the holder may read on now; if not, it is noted in `refused`."""
        with self._changed:
            if self._has_room(holder):
                self.refused.discard(holder)
                return True
            if holder not in self.refused:
                self.refused.add(holder)
                self.turned_away += 1
            return False

    def wait_for_room(self, holder: object, deadline: float) -> bool:
        """Wait until the holder may read on; False when time.monotonic() passes the
        deadline first."""
        with self._changed:
            if not self._has_room(holder):
                self.turned_away += 1
            while not self._has_room(holder):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def take(self, holder: object, size: int) -> None:
        with self._changed:
            self._used += size
            self.peak = max(self.peak, self._used)
            self._held[holder] = self._held.get(holder, 0) + size

    def give_back(self, holder: object) -> None:
        """Everything the holder took comes back (nothing, if it took nothing)."""
        with self._changed:
            self.refused.discard(holder)
            size = self._held.pop(holder, 0)
            if size:
                self._used -= size
                self._changed.notify_all()
