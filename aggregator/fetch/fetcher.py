"""Fetch feed bytes over http(s) or from file: URLs, politely and within limits.

libcurl (pycurl) does the HTTP: one reused easy handle per thread, so each thread
keeps its connections alive; fetch_many drives many fetches at once from one thread
through a curl multi handle, whose pool keeps them alive. Every fetch has a connect
timeout, a read timeout (no body data for so long) and a total deadline covering
name resolution, connect, headers and body; the body is capped before and after
decompression, which is ours (curl is never asked to inflate); redirects are
followed by hand so permanent moves can be recorded and unsafe targets refused.

Keep-alive is safe against a server that sends more than its Content-Length:
curl drops a connection where the surplus comes in the same read, and _Pool.clean
shuts down one where unasked bytes arrived later, so they are never read as the next
answer (which could only be from that same origin anyway).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import ipaddress
import math
import os
import queue
import select
import socket
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import brotli
import certifi
import pycurl

from aggregator.config.loader import DEFAULT_USER_AGENT, Settings, limits_of
from aggregator.errors import FetchError
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
# Idle connections kept per thread: enough for every host a thread polls in
# turn, few enough that threads x connections stays far below the fd limit.
MAX_CONNECTIONS_PER_THREAD = 16
# Bytes curl reads from a socket at a time and hands to the body callback: a feed of
# a few hundred KB comes in a few calls, not one every 16 KB (curl's default).
RECEIVE_BUFFER = 256 * 1024


_DEFAULT = limits_of(Settings(), "fetch")  # the defaults are the settings'


@dataclass(frozen=True)
class Limits:
    """A fetch's limits: the [settings] keys declared with limit=("fetch", name)."""

    connect_timeout: float = _DEFAULT["connect_timeout"]
    read_timeout: float = _DEFAULT["read_timeout"]
    deadline: float = _DEFAULT["deadline"]
    max_body_bytes: int = _DEFAULT["max_body_bytes"]
    max_decompressed_bytes: int = _DEFAULT["max_decompressed_bytes"]
    max_redirects: int = _DEFAULT["max_redirects"]
    per_host: int = _DEFAULT["per_host"]

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(**limits_of(settings, "fetch"))


@dataclass(frozen=True)
class FetchRequest:
    """One fetch, as Fetcher.fetch takes it: fetch_many takes many."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    allow_private: bool = False
    now: datetime | None = None
    body: bytes | None = None  # sent as a POST; None: a GET
    # A URL taken from a source's content (an article link): private address space is
    # refused from the first request on, whatever the source's allow_private says.
    untrusted: bool = False


Key = TypeVar("Key")


# --- header helpers (pure) ------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def parse_max_age(headers: dict[str, str], now: datetime) -> float | None:
    """Freshness lifetime from Cache-Control max-age, else from Expires."""
    cache_control = headers.get("cache-control", "")
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip().strip('"').isdigit():
            return float(value.strip().strip('"'))
    expires = headers.get("expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return None


def is_private_address(address: str) -> bool:
    """True for an IP address in loopback, private, link-local, reserved or unspecified
    space ("" or a name: False)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
    )


def _is_private_host(host: str) -> bool:
    """True when a host name or address points at private space (see is_private_address);
    names are looked up here. Only for fetches through a proxy: see Fetcher._hops."""
    if is_private_address(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return any(is_private_address(str(info[4][0])) for info in infos)


def _proxy_configured() -> bool:
    """Whether curl will send requests through a proxy named in the environment (the
    variables curl reads: no upper-case HTTP_PROXY)."""
    names = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    return any(os.environ.get(name) for name in names)


# --- one exchange, fed by curl's callbacks --------------------------------------------


class _Exchange:
    """The final response of one request: status, headers and the decoded body.

    curl calls header() for every header line of every response it reads
    (an interim 100 Continue too) and body() for each piece of the body; both
    enforce the caps and stop the transfer (by answering 0) when one trips,
    keeping the reason in `error`.
    """

    __slots__ = (
        "chunks",
        "decoder",
        "discarded",
        "error",
        "guard",
        "headers",
        "limits",
        "peer",
        "reason",
        "received",
        "refused",
        "size",
        "status",
    )

    def __init__(self, limits: Limits, guard: _Guard | None = None) -> None:
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
        limits = self.limits
        self.received += len(data)
        if self.received > limits.max_body_bytes:
            return self._stop(FetchError(f"body is over the {limits.max_body_bytes} byte cap"))
        if decoder.passthrough:
            self.size += len(data)
            if self.size > limits.max_decompressed_bytes:
                return self._stop(_decompressed_over(limits))
            self.chunks.append(data)
            return None
        try:
            for piece in decoder.decode(data):
                self.size += len(piece)
                if self.size > limits.max_decompressed_bytes:
                    return self._stop(_decompressed_over(limits))
                self.chunks.append(piece)
        except FetchError as exc:
            return self._stop(exc)
        return None

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


class _Slots:
    """At most n fetches in flight to one host: n tokens in a queue, a C-level
    blocking primitive (threading.Semaphore is Python code, run on every fetch)."""

    __slots__ = ("_tokens",)

    def __init__(self, n: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(max(1, n)):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc: object) -> None:
        self._tokens.put(None)

    def take(self, wait: float = 0.0) -> bool:
        """A token if one is free within `wait` seconds (none: at once or not at all)."""
        try:
            if wait > 0:
                self._tokens.get(timeout=wait)
            else:
                self._tokens.get_nowait()
        except queue.Empty:
            return False
        return True

    def give_back(self) -> None:
        self._tokens.put(None)


def _decompressed_over(limits: Limits) -> FetchError:
    return FetchError(f"decompressed body is over the {limits.max_decompressed_bytes} byte cap")


HeaderLine = str | bytes


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


# --- one thread's handle ------------------------------------------------------------------

Origin = tuple[str, str, int]  # scheme, host, port: what curl matches a connection on
# curl itself refuses to reuse an idle connection with unread input only once it has
# been idle for about a second; below that, _Pool.clean looks.


@contextlib.contextmanager
def _borrowed(fd: int, local: int, remote: int) -> Iterator[socket.socket | None]:
    """curl's socket `fd` as a Python socket for a moment, or None when that number
    is closed or now belongs to another connection; the descriptor stays curl's."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # closed since: curl will not reuse it
        yield None
        return
    try:
        try:
            same = sock.getsockname()[1] == local and sock.getpeername()[1] == remote
        except OSError:  # not connected any more
            same = False
        yield sock if same else None
    finally:
        sock.detach()


class _Pool:
    """The connections a handle keeps (an easy handle's, or a multi handle's pool), by
    origin. curl may reuse any idle one for the next transfer to that origin, so all
    of them are looked at first."""

    __slots__ = ("known",)

    def __init__(self) -> None:
        self.known: dict[Origin, dict[int, tuple[int, int]]] = {}  # fd -> local, remote port

    def remember(self, origin: Origin, curl: pycurl.Curl) -> None:
        """After a transfer, while its handle is still in the multi: its connection."""
        try:
            fd = curl.getinfo(pycurl.ACTIVESOCKET)
            ports = (curl.getinfo(pycurl.LOCAL_PORT), curl.getinfo(pycurl.PRIMARY_PORT))
        except pycurl.error:
            return
        if fd == -1:
            return
        known = self.known.setdefault(origin, {})
        known.pop(fd, None)
        known[fd] = ports
        if len(known) > MAX_CONNECTIONS_PER_THREAD:  # long closed, most likely
            del known[next(iter(known))]

    def clean(self, origin: Origin, busy: frozenset[int]) -> bool:
        """Shut down every idle connection to the origin that has bytes waiting nobody
        asked for (they would be read as the next answer): sending on it then fails,
        and curl connects afresh. True when there was one. `busy`: the sockets of
        transfers under way, whose answers are not unasked."""
        known = self.known.get(origin)
        idle = [fd for fd in known or () if fd not in busy]
        if not known or not idle:
            return False
        try:  # the common case, nothing to read, in one cheap call
            readable = select.select(idle, (), (), 0)[0]
        except (OSError, ValueError):  # one closed, or a number too high for select
            readable = idle
        found = False
        for fd in readable:
            local, remote = known.pop(fd)
            with _borrowed(fd, local, remote) as sock:
                if sock is None:  # closed, or the number is another socket's now
                    continue
                known[fd] = (local, remote)
                with contextlib.suppress(OSError):  # (nothing waiting: EAGAIN)
                    if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                        sock.shutdown(socket.SHUT_RDWR)
                        del known[fd]
                        found = True
        return found


def _fresh_if_tainted(
    handle: pycurl.Curl, pool: _Pool, origin: Origin, busy: frozenset[int] = frozenset()
) -> None:
    """Before a request: a kept connection with unasked bytes waiting is shut down, and
    this request gets a new one rather than relying on curl's retry after a failed send."""
    handle.setopt(pycurl.FRESH_CONNECT, 1 if pool.clean(origin, busy) else 0)


class _Session:
    """A thread's curl handle, and the connections it keeps."""

    __slots__ = ("curl", "pool")

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.pool = _Pool()


class _MultiSession:
    """A thread's curl multi handle for fetch_many: one connection pool for all its
    transfers, and easy handles kept between calls, so connections stay alive."""

    __slots__ = ("multi", "pool", "running", "spare")

    def __init__(self, multi: pycurl.CurlMulti) -> None:
        self.multi = multi
        self.running = False
        self.spare: list[pycurl.Curl] = []
        self.pool = _Pool()


@dataclass(frozen=True)
class _Guard:
    """The addresses a request may not connect to: after a redirect from public space,
    private ones (SSRF). Checked on the addresses curl itself resolved, as it opens each
    connection, so no name is looked up outside the request's timeouts, nor answered
    one way to the check and another way to the connection."""

    target: str  # the redirect's URL, for the error
    private: Callable[[str], bool]
    untrusted: bool = False  # a URL from a source's content: never private space

    def refuses(self, address: str) -> bool:
        return self.private(address)


@dataclass(frozen=True)
class _Hop:
    """One request of a fetch (a redirect makes another): what to ask, and by when."""

    url: str
    origin: Origin
    lines: list[HeaderLine]
    deadline: float  # time.monotonic() by which the whole fetch must be done
    guard: _Guard | None = None
    body: bytes | None = None  # a POST's


Hops = Generator[_Hop, "_Exchange", FetchResult]


def _aim(handle: pycurl.Curl, hop: _Hop, exchange: _Exchange, left: float) -> None:
    """Set a handle up for one request, its answer read into `exchange`."""
    handle.setopt(pycurl.URL, _ascii_url(hop.url))
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
        self._proxied = _proxy_configured()
        self._base_headers = {
            "user-agent": ("User-Agent", user_agent),
            "accept": ("Accept", ACCEPT),
            # Sent as a plain header: the body is decoded here, in bounded steps.
            "accept-encoding": ("Accept-Encoding", "gzip, deflate, br"),
        }
        self._base_lines = _header_lines(self._base_headers)
        self._host_slots: dict[str, _Slots] = {}
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
        try:
            result = self._fetch(request)
        except FetchError as exc:
            exc.seconds = time.monotonic() - began
            raise
        return evolve(result, seconds=time.monotonic() - began)

    def _fetch(self, request: FetchRequest) -> FetchResult:
        if _origin(request.url)[0] == "file":
            if request.untrusted:
                raise FetchError(f"only http and https URLs are fetched, not {request.url!r}")
            return fetch_file(
                request.url,
                etag=request.etag,
                last_modified=request.last_modified,
                limits=self.limits,
            )
        hops = self._hops(request)
        hop = next(hops)
        while True:
            with self._slot(hop.origin[1]):
                exchange = self._exchange(hop)
            try:
                hop = hops.send(exchange)
            except StopIteration as finished:
                result: FetchResult = finished.value
                return result

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
        run = _MultiRun(self, session, iter(requests), max(1, in_flight))
        try:
            yield from run.results()
        finally:
            run.abandon()
            session.running = False

    def _hops(self, request: FetchRequest) -> Hops:
        """A fetch as the requests it makes: each _Hop yielded is answered with its
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
        if guarded and self._proxied and _is_private_host(urlsplit(url).hostname or ""):
            raise FetchError(_refusal(url, "", untrusted=True))
        body = request.body
        for _hop in range(self.limits.max_redirects + 1):
            origin = _origin(url)
            _check_scheme(url, origin[0])
            guard = _Guard(url, self.private, request.untrusted) if guarded else None
            exchange = yield _Hop(url, origin, lines, deadline, guard, body)
            first_peer = exchange.peer if first_peer is None else first_peer
            status = exchange.status
            if status not in REDIRECTS:
                return self._result(url, exchange, moved_to, now)
            location = exchange.headers.get("location")
            if not location:
                raise FetchError(f"redirect {status} without Location", status=status)
            target = urljoin(url, _location(location))
            _check_scheme(target)
            guarded = guarded or not (request.allow_private or self.private(first_peer))
            if guarded and self._proxied and _is_private_host(urlsplit(target).hostname or ""):
                # Through a proxy curl connects to the proxy, never to the target: the
                # target's name is looked up here instead.
                raise FetchError(_refusal(target, "", request.untrusted))
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

    def _session(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
        elif self._closed:
            raise FetchError("the fetcher is closed")
        return session

    def _new_session(self) -> _Session:
        handle = self._new_handle()
        with self._handles_lock:
            if self._closed:
                handle.close()
                raise FetchError("the fetcher is closed")
            self._handles.add(handle)
        session = _Session(handle)
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

    def _slot(self, host: str) -> _Slots:
        slots = self._host_slots.get(host)
        if slots is None:
            with self._slots_lock:
                slots = self._host_slots.setdefault(host, _Slots(self.limits.per_host))
        return slots

    def _multi_session(self) -> _MultiSession:
        session: _MultiSession | None = getattr(self._local, "multi", None)
        with self._handles_lock:
            if self._closed:
                raise FetchError("the fetcher is closed")
            if session is None:
                multi = pycurl.CurlMulti()
                multi.setopt(pycurl.M_MAXCONNECTS, MAX_CONNECTIONS_PER_THREAD * 8)
                self._handles.add(multi)
                session = _MultiSession(multi)
                self._local.multi = session
        return session

    def _spare_handle(self, session: _MultiSession) -> pycurl.Curl:
        if session.spare:
            return session.spare.pop()
        handle = self._new_handle()
        with self._handles_lock:
            self._handles.add(handle)
        return handle

    def _exchange(self, hop: _Hop) -> _Exchange:
        """One request and its answer, on this thread's handle, within the deadline."""
        left = hop.deadline - time.monotonic()
        if left <= 0:
            raise FetchError(self._deadline_message())
        session = self._session()
        handle = session.curl
        _fresh_if_tainted(handle, session.pool, hop.origin)
        exchange = _Exchange(self.limits, hop.guard)
        try:
            _aim(handle, hop, exchange, left)
            handle.perform()
        except pycurl.error as exc:
            failure = self._failure(exchange, exc.args, hop.deadline)
            if failure is not None:
                raise failure from None
        finally:
            session.pool.remember(hop.origin, handle)
        exchange.peer = str(handle.getinfo(pycurl.PRIMARY_IP) or "")
        return exchange

    def _failure(
        self, exchange: _Exchange, args: tuple[Any, ...], deadline: float
    ) -> FetchError | None:
        """What a transfer that curl ended with an error means: the cap or decoding
        error a callback stopped it for; nothing when an unwanted body (not a 2xx) was
        left unread on purpose, as the status is the answer; else curl's reason."""
        if exchange.error is not None:
            return exchange.error
        if exchange.refused and exchange.guard is not None:
            guard = exchange.guard
            return FetchError(_refusal(guard.target, exchange.refused, guard.untrusted))
        if exchange.discarded:
            return None
        return FetchError(self._curl_message(args, deadline))

    def _deadline_message(self) -> str:
        return f"timed out: the fetch took longer than its {self.limits.deadline:g} s deadline"

    def _curl_message(self, args: tuple[Any, ...], deadline: float) -> str:
        if len(args) < 2 or not isinstance(args[0], int):
            return f"curl: {args}"  # not from a transfer (a handle closed under us, say)
        code, text = args[0], str(args[1])
        if code == pycurl.E_OPERATION_TIMEDOUT:
            if time.monotonic() >= deadline - 0.05:
                return self._deadline_message()
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
        self, url: str, exchange: _Exchange, moved_to: str | None, now: datetime
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


@dataclass(eq=False)
class _Transfer:
    """A fetch of fetch_many: the caller's key, its hops, the request under way."""

    key: Any
    hops: Hops
    hop: _Hop
    began: float  # time.monotonic() when the fetch began
    exchange: _Exchange | None = None


# The longest fetch_many waits for its sockets before asking curl again: curl's own
# timers say when it wants to be asked; this bounds the wait should they not.
LONGEST_WAIT = 0.1


class _MultiRun:
    """One fetch_many call: starts transfers as the in-flight budget and the host
    slots allow, drives them all with curl's multi interface, and hands back each
    fetch as it finishes. A redirect's next request takes the same way in."""

    def __init__(
        self,
        fetcher: Fetcher,
        session: _MultiSession,
        requests: Iterator[tuple[Any, FetchRequest]],
        in_flight: int,
    ) -> None:
        self.fetcher = fetcher
        self.session = session
        self.requests = requests
        self.in_flight = in_flight
        self.active: dict[pycurl.Curl, _Transfer] = {}
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
        if _origin(request.url)[0] == "file":
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
        hops = self.fetcher._hops(request)
        try:
            hop = next(hops)
        except FetchError as exc:
            self._finish(key, exc, began)
            return
        transfer = _Transfer(key, hops, hop, began)
        if not self._try_start(transfer):
            self.waiting.append(transfer)

    def _slot(self, transfer: _Transfer) -> _Slots:
        return self.fetcher._slot(transfer.hop.origin[1])

    def _try_start(self, transfer: _Transfer) -> bool:
        if not self._slot(transfer).take():
            return False
        self._start(transfer)
        return True

    def _wait_for_slot(self) -> None:
        transfer = self.waiting.popleft()
        if self._slot(transfer).take(wait=max(0.0, transfer.hop.deadline - time.monotonic())):
            self._start(transfer)
        else:
            self._end(transfer, FetchError(self.fetcher._deadline_message()))

    def _start(self, transfer: _Transfer) -> None:
        """The transfer's request under way (its host slot taken)."""
        hop = transfer.hop
        left = hop.deadline - time.monotonic()
        if left <= 0:
            self._slot(transfer).give_back()
            self._end(transfer, FetchError(self.fetcher._deadline_message()))
            return
        session = self.session
        handle = self.fetcher._spare_handle(session)
        busy = frozenset(
            other.getinfo(pycurl.ACTIVESOCKET)
            for other, under_way in self.active.items()
            if under_way.hop.origin == hop.origin
        )
        _fresh_if_tainted(handle, session.pool, hop.origin, busy)
        transfer.exchange = _Exchange(self.fetcher.limits, hop.guard)
        _aim(handle, hop, transfer.exchange, left)
        session.multi.add_handle(handle)
        self.active[handle] = transfer

    def _drive(self) -> None:
        """Let curl move every transfer on; wait for the sockets when none finished."""
        multi = self.session.multi
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

    def _done(self, handle: pycurl.Curl, error: tuple[Any, ...] | None) -> None:
        """A request answered (or failed): the fetch ends, or its next hop waits to start."""
        transfer = self.active.pop(handle)
        hop, exchange = transfer.hop, transfer.exchange
        assert exchange is not None
        exchange.peer = str(handle.getinfo(pycurl.PRIMARY_IP) or "")
        self.session.pool.remember(hop.origin, handle)
        self.session.multi.remove_handle(handle)
        self.session.spare.append(handle)
        self._slot(transfer).give_back()
        if error is not None:
            failure = self.fetcher._failure(exchange, error, hop.deadline)
            if failure is not None:
                self._end(transfer, failure)
                return
        try:
            transfer.hop = transfer.hops.send(exchange)
        except StopIteration as finished:
            self._finish(transfer.key, finished.value, transfer.began)
            return
        except FetchError as exc:
            self._finish(transfer.key, exc, transfer.began)
            return
        if not self._try_start(transfer):
            self.waiting.append(transfer)

    def _end(self, transfer: _Transfer, error: FetchError) -> None:
        transfer.hops.close()
        self._finish(transfer.key, error, transfer.began)

    def abandon(self) -> None:
        """The caller stopped early: transfers under way are dropped, slots given back."""
        for handle, transfer in self.active.items():
            with contextlib.suppress(pycurl.error):
                self.session.multi.remove_handle(handle)
            self.session.spare.append(handle)
            self._slot(transfer).give_back()
            transfer.hops.close()
        self.active.clear()
        for transfer in self.waiting:
            transfer.hops.close()
        self.waiting.clear()


def _reason(status: int, phrase: str) -> str:
    """The server's reason phrase; HTTP/2 has none, so the standard one then."""
    if phrase.strip():
        return phrase.strip()
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# --- bounded content decoding ----------------------------------------------------------

STEP = 64 * 1024  # decompressed bytes produced per step (brotli's steps may be a little more)


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._started = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not self._started and self._wbits == zlib.MAX_WBITS and data:
            self._started = True
            try:  # "deflate" is meant to be zlib-wrapped; many servers send it raw
                first = self._inflate.decompress(data, STEP)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                first = self._inflate.decompress(data, STEP)
            yield first
            data = self._inflate.unconsumed_tail
        while data:
            yield self._inflate.decompress(data, STEP)
            data = self._inflate.unconsumed_tail

    def flush(self) -> Iterator[bytes]:
        while True:
            piece = self._inflate.decompress(b"", STEP)
            if not piece:
                break
            yield piece
        yield self._inflate.flush()


class _Brotli:
    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        # The limit is a soft one (the buffer grows in blocks): steps of up to ~1.5 STEP.
        piece = self._decompressor.process(data, output_buffer_limit=STEP)
        while piece:
            yield piece
            piece = self._decompressor.process(b"", output_buffer_limit=STEP)

    def flush(self) -> Iterator[bytes]:
        return iter(())


class _Identity:
    def decode(self, data: bytes) -> Iterator[bytes]:
        yield data

    def flush(self) -> Iterator[bytes]:
        return iter(())


_Step = _Zlib | _Brotli | _Identity


def _step(coding: str) -> _Step:
    if coding in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if coding == "br":
        return _Brotli()
    if coding in ("identity", ""):
        return _Identity()
    raise FetchError(f"unsupported Content-Encoding {coding!r}")


class BoundedDecoder:
    """Undoes a Content-Encoding chain ("gzip", "br", "deflate, gzip"...), never
    producing more than STEP bytes per step, so a bomb is stopped by the
    caller's cap before it can fill memory."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        # Applied in the order listed, so undone in reverse.
        self._steps = [_step(c) for c in reversed(codings)]
        # Nothing to undo: the bytes are the body (the common case, kept cheap).
        self.passthrough = all(isinstance(step, _Identity) for step in self._steps)

    def decode(self, data: bytes) -> Iterator[bytes]:
        return self._run(0, data)

    def _run(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._steps):
            if data:
                yield data
            return
        try:
            for piece in self._steps[index].decode(data):
                yield from self._run(index + 1, piece)
        except (zlib.error, brotli.error) as exc:
            raise FetchError(f"cannot decode the body: {exc}") from None

    def flush(self) -> Iterator[bytes]:
        for index, step in enumerate(self._steps):
            try:
                for piece in step.flush():
                    yield from self._run(index + 1, piece)
            except (zlib.error, brotli.error) as exc:
                raise FetchError(f"cannot decode the body: {exc}") from None


def _refusal(target: str, address: str = "", untrusted: bool = False) -> str:
    at = f" ({address})" if address else ""
    if untrusted:
        return f"refused a private address for a link taken from a source: {target}{at}"
    return f"refused redirect from a public address to a private one: {target}{at}"


@functools.lru_cache(maxsize=4096)
def _origin(url: str) -> Origin:
    """A URL's scheme, lower-cased host and port, kept for the next poll: urlsplit
    is a good part of a 304's cost, and the same URLs come back poll after poll."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # curl refuses the URL
        port = 0
    return parts.scheme, parts.hostname or "", port


def _location(value: str) -> str:
    """A Location header, read as latin-1: raw UTF-8 in it (it happens) made text again."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # kept as they are, escapes included


def _ascii_url(url: str) -> str:
    """The URL as curl must get it: an IDNA host name, other non-ASCII characters
    and spaces %-escaped as UTF-8 (what browsers send)."""
    if url.isascii() and " " not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        name, colon, port = hostport.partition(":")  # (a non-ASCII host has no [brackets])
        try:
            netloc = f"{userinfo}{at}{_idna(name)}{colon}{port}"
        except UnicodeError:
            raise FetchError(f"not a valid host name: {name!r}") from None
    return quote(urlunsplit(parts._replace(netloc=netloc)), safe=URL_SAFE)


def _idna(host: str) -> str:
    # The standard library's IDNA 2003 codec: enough for the Chinese and other
    # names feeds use, without one more dependency.
    return host.encode("idna").decode("ascii")


def _check_scheme(url: str, scheme: str | None = None) -> None:
    if (scheme or urlsplit(url).scheme) not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {url!r}")


def _file_validators(path: Path) -> tuple[str, str]:
    stat = path.stat()
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    return etag, last_modified


def fetch_file(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limits: Limits | None = None,
) -> FetchResult:
    """Read a file: URL as if it were served, validators included, so the
    sample sources behave like real ones (a second poll answers 304)."""
    limits = limits or Limits()
    parts = urlsplit(url)
    path = Path(unquote(parts.path))
    try:
        current_etag, current_modified = _file_validators(path)
        if etag and etag == current_etag:
            return FetchResult(url, 304, None, etag=current_etag, last_modified=current_modified)
        if path.stat().st_size > limits.max_body_bytes:
            raise FetchError(f"file is over the {limits.max_body_bytes} byte cap")
        body = path.read_bytes()
    except FileNotFoundError:
        raise FetchError(f"no such file: {path}", status=404) from None
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
    return FetchResult(url, 200, body, etag=current_etag, last_modified=current_modified)
