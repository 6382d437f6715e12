"""A hostile feed server for tests: raw sockets on 127.0.0.1, every path a trick.

Unlike tests/feedserver.py (a polite http.server), this one writes raw bytes,
so it can lie about Content-Length, trickle headers, never end a body, or
send compression bombs. Each path maps to a Behaviour: a function that gets
the connection and the parsed request and does whatever it likes.

It stops itself: on leaving its `with` block, and in any case after
`lifetime` seconds; every slow behaviour checks `stopping`, so no thread
outlives the server for long.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache

import brotli


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased


class Connection:
    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping

    def send(self, data: bytes) -> bool:
        """False once the client has gone or the server is stopping."""
        if self.stopping.is_set():
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def drip(self, data: bytes, interval: float, size: int = 1) -> bool:
        for start in range(0, len(data), size):
            if not self.send(data[start : start + size]) or self.stopping.wait(interval):
                return False
        return True

    def hold(self, seconds: float) -> None:
        """Keep the connection open, saying nothing."""
        self.stopping.wait(seconds)


Behaviour = Callable[[Connection, Request], None]


def head(status: int, headers: dict[str, str], reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(
    body: bytes = b"",
    status: int = 200,
    content_type: str = "application/rss+xml; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Behaviour:
    def behave(conn: Connection, request: Request) -> None:
        sent = {"Content-Type": content_type, "Content-Length": str(len(body))}
        sent.update(headers or {})
        sent.setdefault("Connection", "close")
        conn.send(head(status, sent) + body)

    return behave


def redirect(location: str, status: int = 301) -> Behaviour:
    return respond(b"", status=status, content_type="text/plain", headers={"Location": location})


def drip(body: bytes, interval: float = 0.05) -> Behaviour:
    """Headers at once, then the body one byte at a time."""

    def behave(conn: Connection, request: Request) -> None:
        if conn.send(
            head(200, {"Content-Type": "application/rss+xml", "Content-Length": str(len(body))})
        ):
            conn.drip(body, interval)

    return behave


def slow_headers(interval: float = 0.05) -> Behaviour:
    """A status line, then header bytes one at a time, for ever."""

    def behave(conn: Connection, request: Request) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\n")
        conn.drip(b"X-Slow: " + b"a" * 100_000, interval)

    return behave


def endless(piece: bytes = b"<item><title>again</title></item>" * 100) -> Behaviour:
    """A chunked body that never ends."""

    def behave(conn: Connection, request: Request) -> None:
        headers = {"Content-Type": "application/rss+xml", "Transfer-Encoding": "chunked"}
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        opening = b'<rss version="2.0"><channel>'
        if not conn.send(head(200, headers) + f"{len(opening):x}\r\n".encode() + opening + b"\r\n"):
            return
        while conn.send(chunk):
            pass

    return behave


def length_lie(body: bytes, declared: int, then_hold: float = 0.0) -> Behaviour:
    """Declare one Content-Length, send another amount, then maybe hang."""

    def behave(conn: Connection, request: Request) -> None:
        headers = {"Content-Type": "application/rss+xml", "Content-Length": str(declared)}
        if conn.send(head(200, headers) + body) and then_hold:
            conn.hold(then_hold)

    return behave


def concurrency_probe(
    body: bytes, delay: float, seen: list[int], lock: threading.Lock
) -> Behaviour:
    """Answers after `delay`, recording how many requests were in flight at once."""
    in_flight = [0]

    def behave(conn: Connection, request: Request) -> None:
        with lock:
            in_flight[0] += 1
            seen.append(in_flight[0])
        conn.hold(delay)
        with lock:
            in_flight[0] -= 1
        respond(body)(conn, request)

    return behave


# --- compression bombs -----------------------------------------------------------------


def _zeros(total: int, step: int = 1 << 20) -> Iterator[bytes]:
    block = b"\0" * step
    for _ in range(total // step):
        yield block


@cache
def bomb(encoding: str, total: int = 64 << 20) -> bytes:
    """`total` zero bytes compressed with gzip, deflate (zlib) or br."""
    if encoding == "gzip":
        out = bytearray()
        with gzip.GzipFile(fileobj=_Sink(out), mode="wb", compresslevel=9) as packer:
            for block in _zeros(total):
                packer.write(block)
        return bytes(out)
    if encoding == "deflate":
        packer = zlib.compressobj(9)
        return b"".join(packer.compress(b) for b in _zeros(total)) + packer.flush()
    if encoding == "br":
        compressor = brotli.Compressor(quality=5)
        return b"".join(compressor.process(b) for b in _zeros(total)) + compressor.finish()
    raise ValueError(encoding)


class _Sink:
    def __init__(self, out: bytearray) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        self.out += data
        return len(data)

    def flush(self) -> None:
        pass


def compressed(payload: bytes, encoding: str) -> Behaviour:
    return respond(payload, headers={"Content-Encoding": encoding})


# --- the server --------------------------------------------------------------------------


@dataclass
class HostileServer:
    lifetime: float = 120.0
    routes: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="hostile", daemon=True)
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> HostileServer:
        self._accepter.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.path == path)

    def last_headers(self, path: str) -> dict[str, str]:
        with self.lock:
            return [r.headers for r in self.requests if r.path == path][-1]

    def stop(self) -> None:
        self.stopping.set()
        self._timer.cancel()
        if self._accepter.is_alive() and self._accepter is not threading.current_thread():
            self._accepter.join(2)
        for thread in list(self._threads):
            thread.join(2)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            request = _read_request(sock)
            if request is None:
                return
            with self.lock:
                self.requests.append(request)
            behaviour = self.routes.get(request.path)
            conn = Connection(sock, self.stopping)
            if behaviour is None:
                respond(b"not found", status=404, content_type="text/plain")(conn, request)
            else:
                behaviour(conn, request)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_request(sock: socket.socket) -> Request | None:
    sock.settimeout(5)
    data = b""
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in data and time.monotonic() < deadline and len(data) < 65536:
        try:
            piece = sock.recv(4096)
        except OSError:
            return None
        if not piece:
            return None
        data += piece
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    try:
        method, path, _ = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers)
