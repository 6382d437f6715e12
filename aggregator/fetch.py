"""Fetch feed bytes over http(s) or from file: URLs, politely and within limits.

libcurl (pycurl) does the HTTP: one reused easy handle per thread, so each
thread keeps its connections alive. Every fetch has a connect timeout, a read
timeout (no body data for so long) and a total deadline covering name resolution,
connect, headers and body; the body is capped before and after decompression,
which is ours (curl is never asked to inflate); redirects are followed by hand
so permanent moves can be recorded and unsafe targets refused.

Keep-alive is safe against a server that sends more than its Content-Length:
curl drops a connection where the surplus comes in the same read, and
_Session.tainted refuses one where unasked bytes arrived later, so they are never
read as the next answer (which could only be from that same origin anyway).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import ipaddress
import math
import queue
import select
import socket
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import brotli
import pycurl

from aggregator.config import DEFAULT_USER_AGENT, Settings
from aggregator.errors import FetchError
from aggregator.models import FetchResult

try:  # httpx depends on certifi; without it libcurl's built-in CA path is used
    import certifi

    CA_BUNDLE: str | None = certifi.where()
except ImportError:  # pragma: no cover
    CA_BUNDLE = None

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


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 60.0
    max_body_bytes: int = 20 * 1024 * 1024
    max_decompressed_bytes: int = 50 * 1024 * 1024
    max_redirects: int = 5
    per_host: int = 4

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            deadline=settings.fetch_deadline,
            max_body_bytes=settings.max_body_bytes,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            max_redirects=settings.max_redirects,
            per_host=settings.per_host_limit,
        )


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


def _is_private_host(host: str) -> bool:
    """True when a host name or address points at loopback, private or link-local space."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    return any(
        a.is_private or a.is_loopback or a.is_link_local or a.is_reserved or a.is_unspecified
        for a in addresses
    )


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
        "headers",
        "limits",
        "reason",
        "received",
        "size",
        "status",
    )

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.decoder: BoundedDecoder | None = None
        self.chunks: list[bytes] = []
        self.received = 0
        self.size = 0
        self.error: FetchError | None = None
        self.discarded = False

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
    blocking primitive (threading.Semaphore is Python code, a few µs a fetch)."""

    __slots__ = ("_tokens",)

    def __init__(self, n: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(max(1, n)):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc: object) -> None:
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
# curl itself refuses to reuse an idle connection with unread input, but only once
# it has been idle for about a second; below that, _Session.tainted looks.
CURL_CHECKS_AFTER = 2.0


class _Session:
    """A thread's curl handle, and the connection it last used for each origin."""

    __slots__ = ("curl", "idle")

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        # origin -> (socket fd, local port, remote port, when last used)
        self.idle: dict[Origin, tuple[int, int, int, float]] = {}

    def remember(self, origin: Origin) -> None:
        """After a transfer: the connection curl keeps for this origin, if any."""
        try:
            fd = self.curl.getinfo(pycurl.ACTIVESOCKET)
            if fd == -1:
                self.idle.pop(origin, None)
                return
            local = self.curl.getinfo(pycurl.LOCAL_PORT)
            remote = self.curl.getinfo(pycurl.PRIMARY_PORT)
        except pycurl.error:
            self.idle.pop(origin, None)
            return
        self.idle[origin] = (fd, local, remote, time.monotonic())

    def tainted(self, origin: Origin) -> bool:
        """True when the connection curl would reuse for this origin has bytes
        waiting that nobody asked for (a server sent more than its answer, late):
        they would be read as the start of the next answer."""
        known = self.idle.get(origin)
        if known is None:
            return False
        fd, local, remote, used = known
        if time.monotonic() - used > CURL_CHECKS_AFTER:
            return False
        try:  # the common case, nothing to read, in one cheap call
            if not select.select((fd,), (), (), 0)[0]:
                return False
        except (OSError, ValueError):  # closed, or a number too high for select
            pass
        try:
            sock = socket.socket(fileno=fd)
        except OSError:  # closed since: curl will not reuse it
            return False
        try:
            if sock.getsockname()[1] != local or sock.getpeername()[1] != remote:
                return False  # the number now belongs to another socket
            return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing waiting (EAGAIN), or not connected any more
            return False
        finally:
            sock.detach()  # the descriptor stays curl's


# --- the fetcher -------------------------------------------------------------------------


class Fetcher:
    """Shared by all polls of a daemon. Thread-safe: each thread has its own curl
    handle (with its own live connections), made on its first fetch."""

    def __init__(self, limits: Limits | None = None, user_agent: str = DEFAULT_USER_AGENT) -> None:
        self.limits = limits or Limits()
        self.user_agent = user_agent
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
        self._handles: weakref.WeakSet[pycurl.Curl] = weakref.WeakSet()
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
    ) -> FetchResult:
        """Fetch one URL. Raises FetchError on any failure."""
        if _origin(url)[0] == "file":
            return fetch_file(url, etag=etag, last_modified=last_modified, limits=self.limits)
        lines = self._request_lines(headers)
        # Validators are echoed from a server's headers: never let one end a line.
        if etag and "\r" not in etag and "\n" not in etag:
            lines.append(_line("If-None-Match", etag))
        if last_modified and "\r" not in last_modified and "\n" not in last_modified:
            lines.append(_line("If-Modified-Since", last_modified))
        deadline = time.monotonic() + self.limits.deadline
        return self._follow(url, lines, allow_private, now or datetime.now(UTC), deadline)

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

    def _renew(self, session: _Session) -> _Session:
        """A fresh handle for this thread: the old one's connections are all closed."""
        with self._handles_lock:
            self._handles.discard(session.curl)
        session.curl.close()
        return self._new_session()

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
        # a GIL hand-off some ten times a request. curl measures the speed over its last
        # 5 s, so silence after data is noticed up to 5 s later than read_timeout.
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(limits.read_timeout)))
        handle.setopt(pycurl.MAXCONNECTS, MAX_CONNECTIONS_PER_THREAD)
        if CA_BUNDLE:
            handle.setopt(pycurl.CAINFO, CA_BUNDLE)
        return handle

    def _slot(self, host: str) -> _Slots:
        slots = self._host_slots.get(host)
        if slots is None:
            with self._slots_lock:
                slots = self._host_slots.setdefault(host, _Slots(self.limits.per_host))
        return slots

    def _follow(
        self,
        url: str,
        headers: list[HeaderLine],
        allow_private: bool,
        now: datetime,
        deadline: float,
    ) -> FetchResult:
        first_url = url
        moved_to: str | None = None
        permanent_so_far = True
        for _hop in range(self.limits.max_redirects + 1):
            origin = _origin(url)
            _check_scheme(url, origin[0])
            with self._slot(origin[1]):
                exchange = self._exchange(url, origin, headers, deadline)
            status = exchange.status
            if status not in REDIRECTS:
                return self._result(url, exchange, moved_to, now)
            location = exchange.headers.get("location")
            if not location:
                raise FetchError(f"redirect {status} without Location", status=status)
            target = urljoin(url, _location(location))
            _check_scheme(target)
            if not allow_private and _leaves_public_space(first_url, target):
                raise FetchError(
                    f"refused redirect from a public address to a private one: {target}"
                )
            permanent_so_far = permanent_so_far and status in PERMANENT_REDIRECTS
            if permanent_so_far:
                moved_to = target
            url = target
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    def _exchange(
        self, url: str, origin: Origin, headers: list[HeaderLine], deadline: float
    ) -> _Exchange:
        """One request and its answer, on this thread's handle, within the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(self._deadline_message())
        session = self._session()
        if session.tainted(origin):
            session = self._renew(session)
        handle = session.curl
        exchange = _Exchange(self.limits)
        try:
            handle.setopt(pycurl.URL, _ascii_url(url))
            handle.setopt(pycurl.HTTPHEADER, headers)
            handle.setopt(pycurl.TIMEOUT_MS, max(1, int(left * 1000)))
            handle.setopt(pycurl.HEADERFUNCTION, exchange.header)
            handle.setopt(pycurl.WRITEFUNCTION, exchange.body)
            handle.perform()
        except pycurl.error as exc:
            if exchange.error is not None:
                raise exchange.error from None
            if not exchange.discarded:
                raise FetchError(self._curl_message(exc, deadline)) from None
            # Not a 2xx and its body left unread on purpose: the status is the answer.
        finally:
            session.remember(origin)
        return exchange

    def _deadline_message(self) -> str:
        return f"timed out: the fetch took longer than its {self.limits.deadline:g} s deadline"

    def _curl_message(self, exc: pycurl.error, deadline: float) -> str:
        if len(exc.args) < 2 or not isinstance(exc.args[0], int):
            return f"curl: {exc}"  # not from a transfer (a handle closed under us, say)
        code, text = exc.args[0], str(exc.args[1])
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


def _leaves_public_space(first_url: str, target: str) -> bool:
    """A redirect from a public address into loopback/private space (SSRF)."""
    if not _is_private_host(urlsplit(target).hostname or ""):
        return False
    return not _is_private_host(urlsplit(first_url).hostname or "")


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
    and spaces %-escaped as UTF-8 (what browsers and httpx send)."""
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
