"""Serve the output folder over HTTP with the caching feed readers rely on.

Strong ETags (a hash of the bytes, so they survive restarts), Last-Modified,
304 answers, gzip when asked, HEAD, the right content types, and paths that
can never leave the folder. Extra dynamic routes (health, metrics) can be
plugged in by the daemon.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aggregator.config.loader import Config
from aggregator.publish.formats import REGISTERED

log = logging.getLogger("aggregator.serve")

# Every output format's files by its suffix, and the listings and posts beside them.
CONTENT_TYPES = {
    **{f.suffix: f.content_type for f in REGISTERED.values()},
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
MIN_MAX_AGE = 60
# A route returns (status, content type, body).
Route = Callable[[], tuple[int, str, bytes]]
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Sent with private pages: nothing but their own inline styles runs or loads, and no
# other site may frame them or learn their address.
PRIVATE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Vary": "Accept-Encoding",
}


@dataclass(frozen=True)
class Access:
    """Who may see a private route: nobody when it is off; else loopback clients and
    those in the networks allowed."""

    enabled: bool = True
    allow: tuple[str, ...] = ()  # networks, as config.Settings.status_allow

    def admits(self, addresses: Sequence[str]) -> bool:
        """Whether every address a request came through is allowed: the peer and any
        a proxy forwarded (see client_addresses). One it cannot read refuses."""
        networks = (*LOOPBACK, *(ipaddress.ip_network(n, strict=False) for n in self.allow))
        for text in addresses:
            address = _ip(text)
            if address is None or not any(address in network for network in networks):
                return False
        return bool(addresses)


@dataclass(frozen=True)
class PrivateRoute:
    """A route for the operator (the status page): asked for its Access on every
    request, so a reloaded config applies at once. Its answer is given the query
    parameters (the first value of each)."""

    answer: Callable[[dict[str, str]], tuple[int, str, bytes]]
    access: Callable[[], Access]
    what: str = "this page"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a peer or a proxy header gives it ("192.0.2.1:8080",
    "[2001:db8::1]:443", '"[::1]"'); an IPv4-mapped IPv6 address as its IPv4 one."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_addresses(peer: str, headers: Message) -> list[str]:
    """The addresses a request came through: its peer, and every address a proxy in
    front said it forwarded for (X-Forwarded-For, X-Real-IP, Forwarded). A client can
    add addresses there but never remove its own, so requiring all of them to be
    allowed keeps a page private behind a proxy that forwards everything."""
    addresses = [peer]
    for value in headers.get_all("X-Forwarded-For") or ():
        addresses += [part for part in value.split(",") if part.strip()]
    addresses += headers.get_all("X-Real-IP") or ()
    for value in headers.get_all("Forwarded") or ():
        for element in value.replace(",", ";").split(";"):
            name, _, found = element.strip().partition("=")
            if name.strip().lower() == "for":
                addresses.append(found)
    return addresses


@dataclass(frozen=True)
class _Cached:
    stamp: tuple[int, int, int]  # (inode, mtime_ns, size) of the file it was read from
    body: bytes
    gzipped: bytes
    etag: str
    last_modified: str

    @property
    def gzip_etag(self) -> str:
        # A strong ETag names one representation: the gzip bytes get their own.
        return self.etag[:-1] + '-gz"'


class FileCache:
    """Keeps each file's bytes, gzip form and ETag until the file changes."""

    def __init__(self) -> None:
        self._items: dict[Path, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> _Cached | None:
        try:
            stamp = _stamp(path.stat())
        except OSError:
            return None
        with self._lock:
            cached = self._items.get(path)
        if cached and cached.stamp == stamp:
            return cached
        try:
            # Stamp and bytes from one open file: a replacement landing in between
            # cannot pair the new bytes with the old file's stamp or date.
            with path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                body = handle.read()
        except OSError:
            return None
        stamp = _stamp(stat)
        cached = _Cached(
            stamp,
            body,
            gzip.compress(body, compresslevel=6, mtime=0),
            '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            email.utils.formatdate(stat.st_mtime, usegmt=True),
        )
        with self._lock:
            self._items[path] = cached
        return cached


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    """What identifies one version of a published file. Files are replaced by rename,
    so each version is a new inode: two versions of equal size written within one
    timestamp tick (a few milliseconds) still differ."""
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def max_age_for(config: Config) -> int:
    """Cache lifetime of published files: the shortest poll interval of any source.

    Nothing published can change faster than the sources are polled, so a
    reader (or a proxy) gains nothing by asking more often.
    """
    intervals = [s.interval for s in config.enabled_sources] or [config.settings.default_interval]
    return max(MIN_MAX_AGE, int(min(intervals)))


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (q=0 refuses it)."""
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().lower().removeprefix("q=").strip() if params else "1"
        try:
            return float(quality or "1") > 0
        except ValueError:
            return False
    return False


def resolve_path(root: Path, url_path: str) -> Path | None:
    """The file a URL path names inside root, or None if it would leave root.

    Decoded once; dot files (half-written temp files among them) are never
    served; symlinks are followed only while they stay inside root.
    """
    relative = unquote(urlsplit(url_path).path).lstrip("/")
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    if "\x00" in relative or "\\" in relative:
        return None
    if any(part.startswith(".") for part in relative.split("/")):
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def _not_modified(headers: object, cached: _Cached) -> bool:
    get = headers.get  # type: ignore[attr-defined]
    if_none_match = get("If-None-Match")
    if if_none_match:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or cached.etag in tags or cached.gzip_etag in tags
    if_modified_since = get("If-Modified-Since")
    if if_modified_since:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since)
            current = email.utils.parsedate_to_datetime(cached.last_modified)
        except (TypeError, ValueError):
            return False
        return current <= since
    return False


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of subscribers (every reader
    # polling on the hour) would have its connections dropped and retried seconds later.
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self,
        address: tuple[str, int],
        root: Path,
        *,
        max_age: int = 300,
        routes: dict[str, Route | PrivateRoute] | None = None,
    ) -> None:
        self.root = root
        self.max_age = max_age
        self.routes = routes or {}
        self.cache = FileCache()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="feed-server", daemon=True)
        thread.start()
        return thread

    def handle_error(self, request: object, client_address: Any) -> None:
        """A subscriber hanging up mid-answer is routine: a debug line, not socketserver's
        traceback on stderr (which also broke JSON logs). Anything else is an error."""
        kind = sys.exc_info()[0]
        if kind is not None and issubclass(kind, (ConnectionError, TimeoutError)):
            log.debug("client %s went away (%s)", client_address[0], kind.__name__)
            return
        log.exception("error answering %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    server: FeedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        route = self.server.routes.get(urlsplit(self.path).path)
        if isinstance(route, PrivateRoute):
            self._private(route, send_body)
            return
        if route is not None:
            status, content_type, body = route()
            self._send(
                status, {"Content-Type": content_type, "Cache-Control": "no-store"}, body, send_body
            )
            return
        path = resolve_path(self.server.root, self.path)
        cached = self.server.cache.get(path) if path else None
        if path is None or cached is None:
            self._send(
                HTTPStatus.NOT_FOUND,
                {"Content-Type": "text/plain; charset=utf-8"},
                b"not found\n",
                send_body,
            )
            return
        headers = {
            "ETag": cached.etag,
            "Last-Modified": cached.last_modified,
            "Cache-Control": f"public, max-age={self.server.max_age}",
            "Vary": "Accept-Encoding",
        }
        gzipped = accepts_gzip(self.headers.get("Accept-Encoding"))
        if gzipped:
            headers["ETag"] = cached.gzip_etag
        if _not_modified(self.headers, cached):
            self._send(HTTPStatus.NOT_MODIFIED, headers, b"", send_body=False)
            return
        headers["Content-Type"] = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        body = cached.body
        if gzipped:
            headers["Content-Encoding"] = "gzip"
            body = cached.gzipped
        self._send(HTTPStatus.OK, headers, body, send_body)

    def _private(self, route: PrivateRoute, send_body: bool) -> None:
        access = route.access()
        plain = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
        if not access.enabled:
            self._send(HTTPStatus.NOT_FOUND, plain, b"not found\n", send_body)
            return
        addresses = client_addresses(str(self.client_address[0]), self.headers)
        if not access.admits(addresses):
            log.info("refused %s to %s", route.what, ", ".join(a.strip() for a in addresses))
            allowed = ", ".join(["loopback", *access.allow])
            message = (
                f"forbidden: {route.what} answers only to {allowed} (the status_allow "
                "setting; a proxy's forwarded addresses count too)\n"
            )
            self._send(HTTPStatus.FORBIDDEN, plain, message.encode(), send_body)
            return
        query = {name: values[0] for name, values in parse_qs(urlsplit(self.path).query).items()}
        status, content_type, body = route.answer(query)
        headers = {**PRIVATE_HEADERS, "Content-Type": content_type}
        if accepts_gzip(self.headers.get("Accept-Encoding")):
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body, compresslevel=6, mtime=0)
        self._send(status, headers, body, send_body)

    def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != HTTPStatus.NOT_MODIFIED:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and status != HTTPStatus.NOT_MODIFIED:
            self.wfile.write(body)
