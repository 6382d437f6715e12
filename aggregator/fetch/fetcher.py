"""Fetch feed bytes over http(s) or from file: URLs, politely and within limits.

libcurl (pycurl) does the HTTP: one reused easy handle per thread, so each thread
keeps its connections alive; fetch_many drives many fetches at once from one thread
through a curl multi handle, whose pool keeps them alive. Every fetch has a connect
timeout, a read timeout (no body data for so long) and a total deadline covering
name resolution, connect, headers and body; the body is capped before and after
decompression, which is ours (curl is never asked to inflate); redirects are
followed by hand so permanent moves can be recorded and unsafe targets refused.

Keep-alive is safe against a server that sends more than its Content-Length:
curl drops a connection where the surplus comes in the same read, and Pool.clean
shuts down one where unasked bytes arrived later, so they are never read as the next
answer (which could only be from that same origin anyway).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import certifi
import pycurl

from aggregator.config.loader import DEFAULT_USER_AGENT
from aggregator.errors import FetchError
from aggregator.fetch.budget import BodyBudget
from aggregator.fetch.exchange import Exchange, HeaderLine, Hop, Hops, aim, budget_note
from aggregator.fetch.files import fetch_file
from aggregator.fetch.guard import (
    Guard,
    is_private_address,
    is_private_host,
    proxy_configured,
    refusal,
)
from aggregator.fetch.headers import parse_max_age, parse_retry_after
from aggregator.fetch.multi import MultiRun
from aggregator.fetch.pool import (
    MAX_CONNECTIONS_PER_THREAD,
    MultiSession,
    Session,
    Slots,
    fresh_if_tainted,
)
from aggregator.fetch.request import FetchRequest, Limits
from aggregator.fetch.urls import check_scheme, decoded_location, origin_of
from aggregator.models import FetchResult, evolve

# Mozilla's CA bundle, the same on every machine, rather than whatever CA path the
# libcurl in use was built with (a wheel's may not exist here).
CA_BUNDLE = certifi.where()

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, "
    "application/feed+json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
PERMANENT_REDIRECTS = {301, 308}
TEMPORARY_REDIRECTS = {302, 303, 307}
REDIRECTS = PERMANENT_REDIRECTS | TEMPORARY_REDIRECTS
RETRY_AFTER_STATUSES = {429, 503}
# Bytes curl reads from a socket at a time and hands to the body callback: a feed of
# a few hundred KB comes in a few calls, not one every 16 KB (curl's default).
RECEIVE_BUFFER = 256 * 1024


Key = TypeVar("Key")


def _line(name: str, value: str) -> HeaderLine:
    """One request header line; curl takes bytes as they are, and a value echoed from
    a server (an ETag) goes back in the latin-1 it was read in."""
    line = f"{name}: {value}"
    if line.isascii():
        return line
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


def _header_lines(headers: dict[str, tuple[str, str]]) -> list[HeaderLine]:
    lines = []
    for name, value in headers.values():
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise FetchError(f"refused a request header with a line break or colon: {name!r}")
        lines.append(_line(name, value))
    return lines


# --- the fetcher -------------------------------------------------------------------------


class Fetcher:
    """Shared by all polls of a daemon. Thread-safe: each thread has its own curl
    handle (with its own live connections), made on its first fetch."""

    def __init__(
        self,
        limits: Limits | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        *,
        private: Callable[[str], bool] = is_private_address,
    ) -> None:
        self.limits = limits or Limits()
        self.user_agent = user_agent
        # What counts as private space for redirects (tests count loopback as public,
        # so a refusal can be seen on 127.0.0.1).
        self.private = private
        self._proxied = proxy_configured()
        self._base_headers = {
            "user-agent": ("User-Agent", user_agent),
            "accept": ("Accept", ACCEPT),
            # Sent as a plain header: the body is decoded here, in bounded steps.
            "accept-encoding": ("Accept-Encoding", "gzip, deflate, br"),
        }
        self._base_lines = _header_lines(self._base_headers)
        limit = self.limits.bytes_in_flight
        self.budget = BodyBudget(limit) if limit > 0 else None
        self._host_slots: dict[str, Slots] = {}
        self._slots_lock = threading.Lock()
        self._local = threading.local()
        # Weak: a handle goes (its connections closed) when its thread ends.
        self._handles: weakref.WeakSet[pycurl.Curl | pycurl.CurlMulti] = weakref.WeakSet()
        self._handles_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close the handles (and their connections) of every thread."""
        with self._handles_lock:
            self._closed = True
            handles = list(self._handles)
            self._handles.clear()
        for handle in handles:
            with contextlib.suppress(pycurl.error):  # busy in a thread: goes with that thread
                handle.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        allow_private: bool = False,
        now: datetime | None = None,
        body: bytes | None = None,
        untrusted: bool = False,
    ) -> FetchResult:
        """Fetch one URL (a POST when given a body). Raises FetchError on any failure.
        Either way, `seconds` says how long it took."""
        request = FetchRequest(
            url, etag, last_modified, tuple(headers), allow_private, now, body, untrusted
        )
        began = time.monotonic()
        held_for = getattr(self._local, "holder", None)
        holder = held_for or object()
        try:
            result = self._fetch(request, holder)
        except FetchError as exc:
            exc.seconds = time.monotonic() - began
            raise
        finally:
            if held_for is None and self.budget is not None:
                self.budget.give_back(holder)
        return evolve(result, seconds=time.monotonic() - began)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """The bodies this thread fetches within the block stay counted against the
        budget (max_bytes_in_flight) until the block ends, not only until each fetch
        returns: for a poll, which reads its body after the fetch."""
        if self.budget is None or getattr(self._local, "holder", None) is not None:
            yield
            return
        holder = self._local.holder = object()
        try:
            yield
        finally:
            self._local.holder = None
            self.budget.give_back(holder)

    def _fetch(self, request: FetchRequest, holder: object) -> FetchResult:
        if origin_of(request.url)[0] == "file":
            if request.untrusted:
                raise FetchError(f"only http and https URLs are fetched, not {request.url!r}")
            return fetch_file(
                request.url,
                etag=request.etag,
                last_modified=request.last_modified,
                limits=self.limits,
            )
        hops = self.hops(request)
        hop = next(hops)
        while True:
            slots = self._take_slot(hop, holder)
            try:
                exchange = self._exchange(hop, holder)
            finally:
                slots.give_back()
            try:
                hop = hops.send(exchange)
            except StopIteration as finished:
                result: FetchResult = finished.value
                return result

    def _take_slot(self, hop: Hop, holder: object) -> Slots:
        """A slot of the hop's host, waited for until the fetch's deadline. A holder of
        body bytes (a full-text fetch inside Fetcher.holding()) stands aside in the
        budget meanwhile: the slot may be held by a fetch waiting for room."""
        slots = self.slot(hop.origin[1])
        if slots.take():
            return slots
        waiting = (
            contextlib.nullcontext() if self.budget is None else self.budget.standing_aside(holder)
        )
        with waiting:
            if slots.take(wait=max(0.0, hop.deadline - time.monotonic())):
                return slots
        raise FetchError(self.deadline_message())

    def fetch_many(
        self, requests: Iterable[tuple[Key, FetchRequest]], in_flight: int
    ) -> Generator[tuple[Key, FetchResult | FetchError], None, None]:
        """Fetch many URLs at once from the calling thread: at most `in_flight`
        transfers at a time, and per_host to one host (the same host limit fetch()
        keeps). Yields each request's key with its result, or the FetchError it failed
        with, as they finish; transfers go on in the kernel while the caller works.

        One curl multi handle drives every transfer, so no thread waits for another
        to hand it the GIL: for a quick answer such as a 304, those hand-offs cost
        more than the request itself."""
        session = self._multi_session()
        if session.running:  # its multi handle would mix two runs' transfers
            raise RuntimeError("fetch_many is already running in this thread")
        session.running = True
        run = MultiRun(self, session, iter(requests), max(1, in_flight))
        try:
            yield from run.results()
        finally:
            run.abandon()
            session.running = False

    def hops(self, request: FetchRequest) -> Hops:
        """A fetch as the requests it makes: each Hop yielded is answered with its
        exchange. Redirects are followed by hand, so a permanent move is recorded and
        an unsafe target refused; returns the result, raises FetchError. fetch() and
        fetch_many() both drive it."""
        lines = self._request_lines(request.headers)
        etag, last_modified = request.etag, request.last_modified
        # Validators are echoed from a server's headers: never let one end a line.
        if etag and "\r" not in etag and "\n" not in etag:
            lines.append(_line("If-None-Match", etag))
        if last_modified and "\r" not in last_modified and "\n" not in last_modified:
            lines.append(_line("If-Modified-Since", last_modified))
        deadline = time.monotonic() + self.limits.deadline
        now = request.now or datetime.now(UTC)
        url = request.url
        moved_to: str | None = None
        permanent_so_far = True
        first_peer: str | None = None  # the address the first request went to
        # Redirected from public space, or an untrusted URL: private addresses refused.
        guarded = request.untrusted
        if guarded and self._proxied and is_private_host(urlsplit(url).hostname or ""):
            raise FetchError(refusal(url, "", untrusted=True))
        body = request.body
        for _hop in range(self.limits.max_redirects + 1):
            origin = origin_of(url)
            check_scheme(url, origin[0])
            guard = Guard(url, self.private, request.untrusted) if guarded else None
            exchange = yield Hop(url, origin, lines, deadline, guard, body)
            first_peer = exchange.peer if first_peer is None else first_peer
            status = exchange.status
            if status not in REDIRECTS:
                return self._result(url, exchange, moved_to, now)
            location = exchange.headers.get("location")
            if not location:
                raise FetchError(f"redirect {status} without Location", status=status)
            target = urljoin(url, decoded_location(location))
            check_scheme(target)
            guarded = guarded or not (request.allow_private or self.private(first_peer))
            if guarded and self._proxied and is_private_host(urlsplit(target).hostname or ""):
                # Through a proxy curl connects to the proxy, never to the target: the
                # target's name is looked up here instead.
                raise FetchError(refusal(target, "", request.untrusted))
            permanent_so_far = permanent_so_far and status in PERMANENT_REDIRECTS
            if status not in (307, 308):  # as browsers do: the POST becomes a GET
                body = None
            if permanent_so_far:
                moved_to = target
            url = target
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    def _request_lines(self, headers: Iterable[tuple[str, str]]) -> list[HeaderLine]:
        """Our headers, a source's own headers replacing ours of the same name."""
        merged = None
        for name, value in headers:
            if merged is None:
                merged = dict(self._base_headers)
            merged[name.lower()] = (name, value)
        if merged is None:
            return list(self._base_lines)
        return _header_lines(merged)

    def _session(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
        elif self._closed:
            raise FetchError("the fetcher is closed")
        return session

    def _new_session(self) -> Session:
        handle = self._new_handle()
        with self._handles_lock:
            if self._closed:
                handle.close()
                raise FetchError("the fetcher is closed")
            self._handles.add(handle)
        session = Session(handle)
        self._local.session = session
        return session

    def _new_handle(self) -> pycurl.Curl:
        """The options every request of this fetcher shares; the rest are set per request."""
        limits = self.limits
        handle = pycurl.Curl()
        handle.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)  # by hand, see _follow
        handle.setopt(pycurl.HTTP_CONTENT_DECODING, 0)  # raw bytes: BoundedDecoder is ours
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(limits.connect_timeout * 1000)))
        # The read timeout, kept by curl itself: a Python progress callback would cost
        # GIL hand-offs all through every request. curl measures the speed over its last
        # 5 s, so silence after data is noticed up to 5 s later than read_timeout.
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(limits.read_timeout)))
        handle.setopt(pycurl.MAXCONNECTS, MAX_CONNECTIONS_PER_THREAD)
        handle.setopt(pycurl.BUFFERSIZE, RECEIVE_BUFFER)
        handle.setopt(pycurl.CAINFO, CA_BUNDLE)
        return handle

    def slot(self, host: str) -> Slots:
        slots = self._host_slots.get(host)
        if slots is None:
            with self._slots_lock:
                slots = self._host_slots.setdefault(host, Slots(self.limits.per_host))
        return slots

    def _multi_session(self) -> MultiSession:
        session: MultiSession | None = getattr(self._local, "multi", None)
        with self._handles_lock:
            if self._closed:
                raise FetchError("the fetcher is closed")
            if session is None:
                multi = pycurl.CurlMulti()
                multi.setopt(pycurl.M_MAXCONNECTS, MAX_CONNECTIONS_PER_THREAD * 8)
                self._handles.add(multi)
                session = MultiSession(multi)
                self._local.multi = session
        return session

    def spare_handle(self, session: MultiSession) -> pycurl.Curl:
        if session.spare:
            return session.spare.pop()
        handle = self._new_handle()
        with self._handles_lock:
            self._handles.add(handle)
        return handle

    def _exchange(self, hop: Hop, holder: object) -> Exchange:
        """One request and its answer, on this thread's handle, within the deadline."""
        left = hop.deadline - time.monotonic()
        if left <= 0:
            raise FetchError(self.deadline_message())
        session = self._session()
        handle = session.curl
        fresh_if_tainted(handle, session.pool, hop.origin)
        exchange = Exchange(self.limits, hop.guard, self.budget, holder, hop.deadline)
        try:
            aim(handle, hop, exchange, left)
            handle.perform()
        except pycurl.error as exc:
            failure = self.failure(exchange, exc.args, hop.deadline)
            if failure is not None:
                raise failure from None
        finally:
            session.pool.remember(hop.origin, handle)
        exchange.peer = str(handle.getinfo(pycurl.PRIMARY_IP) or "")
        return exchange

    def failure(
        self, exchange: Exchange, args: tuple[Any, ...], deadline: float
    ) -> FetchError | None:
        """What a transfer that curl ended with an error means: the cap or decoding
        error a callback stopped it for; nothing when an unwanted body (not a 2xx) was
        left unread on purpose, as the status is the answer; else curl's reason."""
        if exchange.error is not None:
            return exchange.error
        if exchange.refused and exchange.guard is not None:
            guard = exchange.guard
            return FetchError(refusal(guard.target, exchange.refused, guard.untrusted))
        if exchange.discarded:
            return None
        message = self._curl_message(args, deadline)
        if exchange.waited and exchange.budget is not None:
            message += f"; it had waited for memory: {budget_note(exchange.budget)}"
        return FetchError(message)

    def deadline_message(self) -> str:
        return f"timed out: the fetch took longer than its {self.limits.deadline:g} s deadline"

    def _curl_message(self, args: tuple[Any, ...], deadline: float) -> str:
        if len(args) < 2 or not isinstance(args[0], int):
            return f"curl: {args}"  # not from a transfer (a handle closed under us, say)
        code, text = args[0], str(args[1])
        if code == pycurl.E_OPERATION_TIMEDOUT:
            if time.monotonic() >= deadline - 0.05:
                return self.deadline_message()
            if text.startswith("Operation too slow"):  # LOW_SPEED_TIME, the read timeout
                return f"timed out: no body data for {self.limits.read_timeout:g} s"
            if text.startswith(("Connection timed out", "Resolving timed out")):
                return f"timed out: no connection within {self.limits.connect_timeout:g} s"
            return f"timed out: {text}"
        if code == pycurl.E_PARTIAL_FILE:
            return f"the peer closed the connection before the end of the body ({text})"
        if code == pycurl.E_COULDNT_RESOLVE_HOST:
            return f"cannot resolve the host name ({text})"
        if code == pycurl.E_COULDNT_CONNECT:
            return f"cannot connect ({text})"
        return text or f"curl error {code}"

    def _result(
        self, url: str, exchange: Exchange, moved_to: str | None, now: datetime
    ) -> FetchResult:
        status = exchange.status
        headers = exchange.headers
        if status == 304:
            return FetchResult(
                url,
                status,
                None,
                etag=headers.get("etag"),
                last_modified=headers.get("last-modified"),
                moved_to=moved_to,
                max_age=parse_max_age(headers, now),
                headers=headers,
            )
        if status == 410:
            raise FetchError("410 Gone: the feed was removed for good", status=410, gone=True)
        if status >= 400 or status < 200:
            retry_after = (
                parse_retry_after(headers.get("retry-after"), now)
                if status in RETRY_AFTER_STATUSES
                else None
            )
            raise FetchError(
                f"HTTP {status} {_reason(status, exchange.reason)}".strip(),
                status=status,
                retry_after=retry_after,
            )
        body = exchange.finish()
        return FetchResult(
            url,
            status,
            body,
            content_type=headers.get("content-type", ""),
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            moved_to=moved_to,
            max_age=parse_max_age(headers, now),
            headers=headers,
        )


def _reason(status: int, phrase: str) -> str:
    """The server's reason phrase; HTTP/2 has none, so the standard one then."""
    if phrase.strip():
        return phrase.strip()
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
