"""A real HTTP server on 127.0.0.1 serving feed bytes for tests.

Each path has a Resource: bytes, status, headers. The server honours
If-None-Match / If-Modified-Since like a real feed host, counts requests,
and records the headers it was sent.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Resource:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    validators: bool = True  # send ETag/Last-Modified and answer 304
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None  # full control

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.posted: list[tuple[str, bytes]] = []  # POST requests' paths and bodies
        self.statuses: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # Without TCP_NODELAY every keep-alive answer waits ~40 ms (Nagle).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """A client hanging up (a kept-alive connection dropped, a killed process) is no
        error. Anything else is printed as socketserver prints it: to sys.stderr, which a
        CliRunner captures into the command's output while a command runs."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def set(self, path: str, body: bytes = b"", **kwargs: object) -> str:
        self.resources[path] = Resource(body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def statuses_for(self, path: str) -> list[int]:
        return [s for p, s in self.statuses if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: FeedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        """Answered as a GET of the same path; the request body is kept in `posted`."""
        length = int(self.headers.get("Content-Length") or 0)
        with self.server.lock:
            self.server.posted.append((self.path, self.rfile.read(length)))
        self.do_GET()

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers.items())))
        resource = self.server.resources.get(self.path)
        if resource is None:
            self._send(404, {"Content-Type": "text/plain"}, b"not found")
            return
        if resource.handler is not None:
            resource.handler(self)
            return
        headers = {"Content-Type": resource.content_type, **resource.headers}
        if resource.validators and resource.status == 200:
            headers["ETag"] = resource.etag
            if self.headers.get("If-None-Match") == resource.etag:
                self._send(304, {"ETag": resource.etag}, b"")
                return
        self._send(resource.status, headers, resource.body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        with self.server.lock:
            self.server.statuses.append((self.path, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if status != 304 else 0))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)
