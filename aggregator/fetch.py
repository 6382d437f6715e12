"""Fetch feed bytes over http(s) or from file: URLs, politely and within limits.

One Fetcher (one httpx client, one connection pool) serves the whole daemon.
Every fetch has a connect timeout, a read timeout and a total deadline; the
body is capped before and after decompression; redirects are followed by hand
so permanent moves can be recorded and unsafe targets refused.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import brotli
import httpcore
import httpx

from aggregator.config import DEFAULT_USER_AGENT, Settings
from aggregator.errors import FetchError
from aggregator.models import FetchResult

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, "
    "application/feed+json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
PERMANENT_REDIRECTS = {301, 308}
TEMPORARY_REDIRECTS = {302, 303, 307}
RETRY_AFTER_STATUSES = {429, 503}


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


# --- the total deadline, enforced on every socket read -------------------------------

_deadline = threading.local()


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """A socket operation's timeout, shrunk to what is left of the fetch's deadline."""
    at: float | None = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("total fetch deadline exceeded")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Shrinks each read's timeout to what is left of the fetch's deadline, so a
    server trickling one byte a second is cut off, in headers or in body."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport() -> httpx.HTTPTransport:
    # No keep-alive: a server that sends more than its Content-Length would
    # otherwise leave bytes on a pooled connection, read as the next source's
    # answer. Polls are minutes apart, so reuse would rarely help anyway.
    transport = httpx.HTTPTransport(retries=0, limits=httpx.Limits(max_keepalive_connections=0))
    pool = transport._pool  # httpx builds an httpcore pool; we wrap its sockets
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return transport


@contextmanager
def _deadline_of(seconds: float) -> Iterator[float]:
    at = time.monotonic() + seconds
    _deadline.at = at
    try:
        yield at
    finally:
        _deadline.at = None


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


def parse_max_age(headers: httpx.Headers | dict[str, str], now: datetime) -> float | None:
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


# --- the fetcher -------------------------------------------------------------------------


class Fetcher:
    """Shared by all polls of a daemon. Thread-safe."""

    def __init__(self, limits: Limits | None = None, user_agent: str = DEFAULT_USER_AGENT) -> None:
        self.limits = limits or Limits()
        self.user_agent = user_agent
        timeout = httpx.Timeout(
            connect=self.limits.connect_timeout,
            read=self.limits.read_timeout,
            write=self.limits.read_timeout,
            pool=self.limits.deadline,
        )
        self.client = httpx.Client(
            transport=_transport(),
            timeout=timeout,
            follow_redirects=False,
            headers={
                "User-Agent": user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": "gzip, deflate, br",
            },
        )
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

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
        now = now or datetime.now(UTC)
        if urlsplit(url).scheme == "file":
            return fetch_file(url, etag=etag, last_modified=last_modified, limits=self.limits)
        request_headers = dict(headers)
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified
        with _deadline_of(self.limits.deadline) as deadline:
            try:
                return self._follow(url, request_headers, allow_private, now)
            except httpx.TimeoutException as exc:
                raise FetchError(self._timeout_message(exc, deadline)) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}") from None

    def _timeout_message(self, exc: httpx.TimeoutException, deadline: float) -> str:
        if time.monotonic() >= deadline - 0.05:
            return f"timed out: the fetch took longer than its {self.limits.deadline:g} s deadline"
        waited = {
            httpx.ConnectTimeout: f"no connection within {self.limits.connect_timeout:g} s",
            httpx.ReadTimeout: f"no data for {self.limits.read_timeout:g} s",
        }.get(type(exc), type(exc).__name__)
        return f"timed out: {waited}"

    def _slot(self, url: str) -> threading.BoundedSemaphore:
        host = (urlsplit(url).hostname or "").lower()
        with self._slots_lock:
            if host not in self._host_slots:
                self._host_slots[host] = threading.BoundedSemaphore(self.limits.per_host)
            return self._host_slots[host]

    def _follow(
        self, url: str, headers: dict[str, str], allow_private: bool, now: datetime
    ) -> FetchResult:
        first_url = url
        moved_to: str | None = None
        permanent_so_far = True
        for _hop in range(self.limits.max_redirects + 1):
            _check_scheme(url)
            with self._slot(url), self.client.stream("GET", url, headers=headers) as response:
                if response.status_code not in PERMANENT_REDIRECTS | TEMPORARY_REDIRECTS:
                    return self._result(url, response, moved_to, now)
                location = response.headers.get("location")
            if not location:
                raise FetchError(
                    f"redirect {response.status_code} without Location", status=response.status_code
                )
            target = urljoin(url, location)
            _check_scheme(target)
            if not allow_private and _leaves_public_space(first_url, target):
                raise FetchError(
                    f"refused redirect from a public address to a private one: {target}"
                )
            permanent_so_far = permanent_so_far and response.status_code in PERMANENT_REDIRECTS
            if permanent_so_far:
                moved_to = target
            url = target
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    def _result(
        self, url: str, response: httpx.Response, moved_to: str | None, now: datetime
    ) -> FetchResult:
        status = response.status_code
        flat_headers = {k.lower(): v for k, v in response.headers.items()}
        if status == 304:
            response.read()  # no body, but reading the end lets the connection be reused
            return FetchResult(
                url,
                status,
                None,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                moved_to=moved_to,
                max_age=parse_max_age(response.headers, now),
                headers=flat_headers,
            )
        if status == 410:
            raise FetchError("410 Gone: the feed was removed for good", status=410, gone=True)
        if status >= 400 or status < 200:
            retry_after = (
                parse_retry_after(response.headers.get("retry-after"), now)
                if status in RETRY_AFTER_STATUSES
                else None
            )
            reason = response.reason_phrase or ""
            raise FetchError(
                f"HTTP {status} {reason}".strip(), status=status, retry_after=retry_after
            )
        body = self._read_body(response)
        return FetchResult(
            url,
            status,
            body,
            content_type=response.headers.get("content-type", ""),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            moved_to=moved_to,
            max_age=parse_max_age(response.headers, now),
            headers=flat_headers,
        )

    def _read_body(self, response: httpx.Response) -> bytes:
        limits = self.limits
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise FetchError(
                f"body of {declared} bytes is over the {limits.max_body_bytes} byte cap"
            )
        decoder = BoundedDecoder(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        size = 0
        received = 0
        # Raw bytes, decoded here in bounded steps: httpx's own decoders would
        # inflate a whole chunk at once, and one brotli chunk can be gigabytes.
        for raw in response.iter_raw():
            received += len(raw)
            if received > limits.max_body_bytes:
                raise FetchError(f"body is over the {limits.max_body_bytes} byte cap")
            for piece in decoder.decode(raw):
                size += len(piece)
                if size > limits.max_decompressed_bytes:
                    raise FetchError(
                        f"decompressed body is over the {limits.max_decompressed_bytes} byte cap"
                    )
                chunks.append(piece)
        for piece in decoder.flush():
            size += len(piece)
            if size > limits.max_decompressed_bytes:
                raise FetchError(
                    f"decompressed body is over the {limits.max_decompressed_bytes} byte cap"
                )
            chunks.append(piece)
        return b"".join(chunks)


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


def _check_scheme(url: str) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
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
