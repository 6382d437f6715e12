"""One request on a curl handle and its answer, read through curl's callbacks within the caps."""

from __future__ import annotations

import socket
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pycurl

from aggregator.errors import FetchError
from aggregator.fetch.budget import BodyBudget
from aggregator.fetch.decoding import BoundedDecoder
from aggregator.fetch.guard import Guard
from aggregator.fetch.request import Limits
from aggregator.fetch.urls import Origin, ascii_url
from aggregator.models import FetchResult

HeaderLine = str | bytes


class Exchange:
    """The final response of one request: status, headers and the decoded body.

    curl calls header() for every header line of every response it reads
    (an interim 100 Continue too) and body() for each piece of the body; both
    enforce the caps and stop the transfer (by answering 0) when one trips,
    keeping the reason in `error`. With a budget, the body's bytes are taken from
    it for `holder`; while it is spent, body() waits for room until `wait_until`
    (time.monotonic()), or, without one, pauses the transfer (fetch_many resumes it).
    """

    __slots__ = (
        "budget",
        "chunks",
        "decoder",
        "discarded",
        "error",
        "guard",
        "headers",
        "holder",
        "limits",
        "peer",
        "reason",
        "received",
        "refused",
        "size",
        "status",
        "wait_until",
        "waited",
    )

    def __init__(
        self,
        limits: Limits,
        guard: Guard | None = None,
        budget: BodyBudget | None = None,
        holder: object = None,
        wait_until: float | None = None,
    ) -> None:
        self.limits = limits
        self.guard = guard  # whose addresses this request may not connect to
        self.refused = ""  # the address the guard refused
        self.peer = ""  # the address curl talked to (CURLINFO_PRIMARY_IP)
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.decoder: BoundedDecoder | None = None
        self.chunks: list[bytes] = []
        self.received = 0
        self.size = 0
        self.error: FetchError | None = None
        self.discarded = False
        self.budget = budget
        self.holder = holder
        self.wait_until = wait_until
        self.waited = False  # turned away by the budget at least once

    def open_socket(self, _purpose: int, address: Any) -> socket.socket | int:
        """curl's socket(2), called with each address it is about to connect to (after
        its own name lookup, within the request's timeouts): the place to refuse one."""
        host = address.addr[0] if isinstance(address.addr, tuple) else ""
        if self.guard is not None and self.guard.refuses(str(host)):
            self.refused = str(host)
            return int(pycurl.SOCKET_BAD)
        return socket.socket(address.family, address.socktype, address.protocol)

    def header(self, line: bytes) -> int | None:
        if line.startswith(b"HTTP/"):  # a status line: a new response begins
            _version, _, rest = line.decode("latin-1").strip().partition(" ")
            code, _, self.reason = rest.partition(" ")
            self.status = int(code) if code.isdigit() else 0
            self.headers = {}
            return None
        if line in (b"\r\n", b"\n"):
            return self._headers_end()
        name, colon, value = line.decode("latin-1").partition(":")
        if colon and not name[:1].isspace():  # (a folded continuation line is dropped)
            key = name.strip().lower()
            value = value.strip()
            old = self.headers.get(key)
            self.headers[key] = value if old is None else f"{old}, {value}"
        return None

    def _headers_end(self) -> int | None:
        if self.status < 200:
            return None  # an interim answer; the real one follows
        if not 200 <= self.status < 300:
            if self.status == 304 or self.headers.get("content-length") == "0":
                return None  # no body to come: the connection stays usable
            # A redirect's or an error's body is not wanted: stop here rather than
            # wait for it (curl then closes this connection).
            self.discarded = True
            return 0
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            return self._stop(
                FetchError(
                    f"body of {declared} bytes is over the {self.limits.max_body_bytes} byte cap"
                )
            )
        try:
            self.decoder = BoundedDecoder(self.headers.get("content-encoding", ""))
        except FetchError as exc:
            return self._stop(exc)
        return None

    def body(self, data: bytes) -> int | None:
        decoder = self.decoder
        if decoder is None:  # a 304 with a body after all: not wanted
            self.discarded = True
            return 0
        budget = self.budget
        if budget is not None and not self._room(budget):
            if self.wait_until is None:  # curl hands the same data again once resumed
                return int(pycurl.WRITEFUNC_PAUSE)
            return self._stop(self.budget_error(budget))
        limits = self.limits
        self.received += len(data)
        if self.received > limits.max_body_bytes:
            return self._stop(FetchError(f"body is over the {limits.max_body_bytes} byte cap"))
        if decoder.passthrough:
            self.size += len(data)
            if self.size > limits.max_decompressed_bytes:
                return self._stop(_decompressed_over(limits))
            self.chunks.append(data)
            if budget is not None:
                budget.take(self.holder, len(data))
            return None
        try:
            for piece in decoder.decode(data):
                self.size += len(piece)
                if self.size > limits.max_decompressed_bytes:
                    return self._stop(_decompressed_over(limits))
                self.chunks.append(piece)
                if budget is not None:
                    budget.take(self.holder, len(piece))
                    # Between the pieces of one read: waiting is possible only here.
                    if self.wait_until is not None and not self._room(budget):
                        return self._stop(self.budget_error(budget))
        except FetchError as exc:
            return self._stop(exc)
        return None

    def _room(self, budget: BodyBudget) -> bool:
        if self.wait_until is None:
            room = budget.room_for(self.holder)
        else:
            room = budget.wait_for_room(self.holder, self.wait_until)
        self.waited = self.waited or not room
        return room

    def budget_error(self, budget: BodyBudget) -> FetchError:
        return FetchError(f"timed out waiting for memory: {budget_note(budget)}")

    def _stop(self, error: FetchError) -> int:
        self.error = error
        return 0  # not the length given: curl aborts the transfer

    def finish(self) -> bytes:
        """The whole decoded body, after the decoder's last pieces."""
        if self.decoder is not None:
            for piece in self.decoder.flush():
                self.size += len(piece)
                if self.size > self.limits.max_decompressed_bytes:
                    raise _decompressed_over(self.limits)
                self.chunks.append(piece)
        body = b"".join(self.chunks)
        self.chunks = []  # the handle keeps this object until its next request
        return body


def budget_note(budget: BodyBudget) -> str:
    return (
        f"the bodies of other fetches in flight held the {budget.total} byte budget"
        " (max_bytes_in_flight)"
    )


def _decompressed_over(limits: Limits) -> FetchError:
    return FetchError(f"decompressed body is over the {limits.max_decompressed_bytes} byte cap")


@dataclass(frozen=True)
class Hop:
    """One request of a fetch (a redirect makes another): what to ask, and by when."""

    url: str
    origin: Origin
    lines: list[HeaderLine]
    deadline: float  # time.monotonic() by which the whole fetch must be done
    guard: Guard | None = None
    body: bytes | None = None  # a POST's


Hops = Generator[Hop, "Exchange", FetchResult]


def aim(handle: pycurl.Curl, hop: Hop, exchange: Exchange, left: float) -> None:
    """Set a handle up for one request, its answer read into `exchange`."""
    handle.setopt(pycurl.URL, ascii_url(hop.url))
    handle.setopt(pycurl.HTTPHEADER, hop.lines)
    handle.setopt(pycurl.TIMEOUT_MS, max(1, int(left * 1000)))
    handle.setopt(pycurl.HEADERFUNCTION, exchange.header)
    handle.setopt(pycurl.WRITEFUNCTION, exchange.body)
    handle.setopt(pycurl.OPENSOCKETFUNCTION, exchange.open_socket)
    if hop.body is None:
        handle.setopt(pycurl.HTTPGET, 1)  # undoes a POST this handle made before
    else:
        handle.setopt(pycurl.POSTFIELDS, hop.body)
    if hop.guard is not None:  # a kept connection was opened unguarded: a new one
        handle.setopt(pycurl.FRESH_CONNECT, 1)
