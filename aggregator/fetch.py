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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

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
        )


# --- the total deadline, enforced on every socket read -------------------------------

_deadline = threading.local()


class _DeadlineStream(httpcore.NetworkStream):
    """Shrinks each read's timeout to what is left of the fetch's deadline, so a
    server trickling one byte a second is cut off, in headers or in body."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        at = getattr(_deadline, "at", None)
        if at is not None:
            left = at - time.monotonic()
            if left <= 0:
                raise httpcore.ReadTimeout("total fetch deadline exceeded")
            timeout = left if timeout is None else min(timeout, left)
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

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
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport() -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(retries=0)
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
        with _deadline_of(self.limits.deadline):
            try:
                return self._follow(url, request_headers, allow_private, now)
            except httpx.TimeoutException as exc:
                raise FetchError(f"timed out: {exc or type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}") from None

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
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if response.num_bytes_downloaded > limits.max_body_bytes:
                    raise FetchError(f"body is over the {limits.max_body_bytes} byte cap")
                if size > limits.max_decompressed_bytes:
                    raise FetchError(
                        f"decompressed body is over the {limits.max_decompressed_bytes} byte cap"
                    )
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            raise FetchError(f"cannot decode the body: {exc}") from None
        return b"".join(chunks)


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
