"""fetch_many's runner: many fetches at once from one thread through a curl multi handle."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pycurl

from aggregator.errors import FetchError
from aggregator.fetch.budget import BodyBudget
from aggregator.fetch.exchange import Exchange, Hop, Hops, aim
from aggregator.fetch.files import fetch_file
from aggregator.fetch.pool import MultiSession, Slots, fresh_if_tainted
from aggregator.fetch.request import FetchRequest
from aggregator.fetch.urls import Origin, origin_of
from aggregator.models import FetchResult, evolve

if TYPE_CHECKING:
    from aggregator.fetch.fetcher import Fetcher


@dataclass(eq=False)
class _Transfer:
    """A fetch of fetch_many: the caller's key, its hops, the request under way."""

    key: Any
    hops: Hops
    hop: Hop
    began: float  # time.monotonic() when the fetch began
    exchange: Exchange | None = None
    handle: pycurl.Curl | None = None  # the curl handle of the request under way


# The longest fetch_many waits for its sockets before asking curl again: curl's own
# timers say when it wants to be asked; this bounds the wait should they not.
LONGEST_WAIT = 0.1


class MultiRun:
    """One fetch_many call: starts transfers as the in-flight budget and the host
    slots allow, drives them all with curl's multi interface, and hands back each
    fetch as it finishes. A redirect's next request takes the same way in. A transfer
    the fetcher's byte budget turns away is paused, and resumed once it has room.
    A transfer's bytes count until it ends; its result is handed back before the
    transfers are driven again, so no body lies uncounted while others read."""

    def __init__(
        self,
        fetcher: Fetcher,
        session: MultiSession,
        requests: Iterator[tuple[Any, FetchRequest]],
        in_flight: int,
    ) -> None:
        self.fetcher = fetcher
        self.session = session
        self.requests = requests
        self.in_flight = in_flight
        self.active: dict[pycurl.Curl, _Transfer] = {}
        self.to_origin: dict[Origin, set[pycurl.Curl]] = {}  # the active ones, by origin
        self.waiting: deque[_Transfer] = deque()  # for a slot of their host
        self.finished: deque[tuple[Any, FetchResult | FetchError]] = deque()
        self.exhausted = False

    def results(self) -> Iterator[tuple[Any, FetchResult | FetchError]]:
        while True:
            self._fill()
            if self.finished:
                yield self.finished.popleft()
            elif self.active:
                self._drive()
            elif self.waiting:  # every slot of their hosts is another thread's
                self._wait_for_slot()
            elif self.exhausted:
                return

    def _fill(self) -> None:
        """Start what can start: fetches waiting for a host slot first, then new
        requests while fewer than in_flight are under way."""
        for _ in range(len(self.waiting)):
            transfer = self.waiting.popleft()
            if len(self.active) >= self.in_flight or not self._try_start(transfer):
                self.waiting.append(transfer)
        while not self.exhausted and len(self.active) + len(self.waiting) < self.in_flight:
            pulled = next(self.requests, None)
            if pulled is None:
                self.exhausted = True
            else:
                self._begin(*pulled)

    def _finish(self, key: Any, outcome: FetchResult | FetchError, began: float) -> None:
        """A fetch is over: handed back with how long it took (its `seconds`)."""
        seconds = time.monotonic() - began
        if isinstance(outcome, FetchError):
            outcome.seconds = seconds
        else:
            outcome = evolve(outcome, seconds=seconds)
        self.finished.append((key, outcome))

    def _begin(self, key: Any, request: FetchRequest) -> None:
        began = time.monotonic()
        if origin_of(request.url)[0] == "file":
            try:
                result: FetchResult | FetchError = fetch_file(
                    request.url,
                    etag=request.etag,
                    last_modified=request.last_modified,
                    limits=self.fetcher.limits,
                )
            except FetchError as exc:
                result = exc
            self._finish(key, result, began)
            return
        hops = self.fetcher.hops(request)
        try:
            hop = next(hops)
        except FetchError as exc:
            self._finish(key, exc, began)
            return
        transfer = _Transfer(key, hops, hop, began)
        if not self._try_start(transfer):
            self.waiting.append(transfer)

    def slot(self, transfer: _Transfer) -> Slots:
        return self.fetcher.slot(transfer.hop.origin[1])

    def _try_start(self, transfer: _Transfer) -> bool:
        if not self.slot(transfer).take():
            return False
        self._start(transfer)
        return True

    def _wait_for_slot(self) -> None:
        transfer = self.waiting.popleft()
        if self.slot(transfer).take(wait=max(0.0, transfer.hop.deadline - time.monotonic())):
            self._start(transfer)
        else:
            self._end(transfer, FetchError(self.fetcher.deadline_message()))

    def _start(self, transfer: _Transfer) -> None:
        """The transfer's request under way (its host slot taken)."""
        hop = transfer.hop
        left = hop.deadline - time.monotonic()
        if left <= 0:
            self.slot(transfer).give_back()
            self._end(transfer, FetchError(self.fetcher.deadline_message()))
            return
        session = self.session
        handle = self.fetcher.spare_handle(session)
        same_origin = self.to_origin.setdefault(hop.origin, set())
        busy = frozenset(other.getinfo(pycurl.ACTIVESOCKET) for other in same_origin)
        fresh_if_tainted(handle, session.pool, hop.origin, busy)
        transfer.exchange = Exchange(self.fetcher.limits, hop.guard, self.fetcher.budget, transfer)
        aim(handle, hop, transfer.exchange, left)
        session.multi.add_handle(handle)
        transfer.handle = handle
        self.active[handle] = transfer
        same_origin.add(handle)

    def _drive(self) -> None:
        """Let curl move every transfer on; wait for the sockets when none finished."""
        multi = self.session.multi
        if self.fetcher.budget is not None and self.fetcher.budget.refused:
            self._resume(self.fetcher.budget)
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        finished = False
        while True:
            queued, succeeded, failed = multi.info_read()
            for handle in succeeded:
                self._done(handle, None)
            for handle, code, text in failed:
                self._done(handle, (code, text))
            finished = finished or bool(succeeded or failed)
            if not queued:
                break
        if not finished:
            wanted = multi.timeout()  # ms; -1: no timer set
            multi.select(LONGEST_WAIT if wanted < 0 else min(wanted / 1000, LONGEST_WAIT))

    def _resume(self, budget: BodyBudget) -> None:
        """Resume the paused transfers the budget has room for again."""
        for holder in list(budget.refused):  # (other threads' fetches' too)
            handle = holder.handle if isinstance(holder, _Transfer) else None
            if handle is None or self.active.get(handle) is not holder:
                continue
            if budget.room_for(holder):
                # curl may call the body callback from here; should it refuse, the
                # transfer stays paused until its deadline ends it.
                with contextlib.suppress(pycurl.error):
                    handle.pause(pycurl.PAUSE_CONT)

    def _done(self, handle: pycurl.Curl, error: tuple[Any, ...] | None) -> None:
        """A request answered (or failed): the fetch ends, or its next hop waits to start."""
        transfer = self.active.pop(handle)
        same_origin = self.to_origin[transfer.hop.origin]
        same_origin.discard(handle)
        if not same_origin:
            del self.to_origin[transfer.hop.origin]
        hop, exchange = transfer.hop, transfer.exchange
        assert exchange is not None
        exchange.peer = str(handle.getinfo(pycurl.PRIMARY_IP) or "")
        self.session.pool.remember(hop.origin, handle)
        self.session.multi.remove_handle(handle)
        self.session.spare.append(handle)
        self.slot(transfer).give_back()
        if error is not None:
            failure = self.fetcher.failure(exchange, error, hop.deadline)
            if failure is not None:
                self._end(transfer, failure)
                return
        try:
            transfer.hop = transfer.hops.send(exchange)
        except StopIteration as finished:
            self._give_back(transfer)
            self._finish(transfer.key, finished.value, transfer.began)
            return
        except FetchError as exc:
            self._give_back(transfer)
            self._finish(transfer.key, exc, transfer.began)
            return
        if not self._try_start(transfer):
            self.waiting.append(transfer)

    def _end(self, transfer: _Transfer, error: FetchError) -> None:
        transfer.hops.close()
        self._give_back(transfer)
        self._finish(transfer.key, error, transfer.began)

    def _give_back(self, transfer: _Transfer) -> None:
        if self.fetcher.budget is not None:
            self.fetcher.budget.give_back(transfer)

    def abandon(self) -> None:
        """The caller stopped early: transfers under way are dropped, slots given back."""
        for handle, transfer in self.active.items():
            with contextlib.suppress(pycurl.error):
                self.session.multi.remove_handle(handle)
            self.session.spare.append(handle)
            self.slot(transfer).give_back()
            transfer.hops.close()
            self._give_back(transfer)
        self.active.clear()
        self.to_origin.clear()
        for transfer in self.waiting:
            transfer.hops.close()
        self.waiting.clear()
