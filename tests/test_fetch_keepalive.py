"""The fetcher keeps connections alive (one curl handle per thread); these check that
a reused connection never carries one answer's leftovers into the next, and how the
answers themselves are read (final headers only, reason phrases, caps on what we send)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from aggregator.errors import FetchError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from tests.feeds import Item, rss
from tests.multifetch import fetch_way  # noqa: F401  (a fixture)

# Every test here runs twice: fetch() on its own, and through fetch_many.
pytestmark = pytest.mark.usefixtures("fetch_way")

FEED = rss([Item("NW202112240300260001", "凝神聚力保畅通")])
FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nEVIL!"

# An answer: what to send for a request, given its headers; then, optionally,
# bytes to send a little later on the same connection, unasked.
Answer = Callable[[dict[str, str]], bytes]


def response(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def feed(request: dict[str, str]) -> bytes:
    if request.get("if-none-match") == '"v1"':
        return response("304 Not Modified", {"ETag": '"v1"'})
    return response("200 OK", {"ETag": '"v1"', "Content-Length": str(len(FEED))}, FEED)


@dataclass
class KeepAliveServer:
    """Raw sockets on 127.0.0.1, many requests per connection (unlike tests/hostile.py):
    records which connection each request came on."""

    answers: dict[str, Answer] = field(default_factory=dict)
    late: dict[str, bytes] = field(default_factory=dict)  # path -> sent 0.2 s after the answer
    seen: list[tuple[int, str]] = field(default_factory=list)  # (connection number, path)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.connections = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths_on(self, number: int) -> list[str]:
        with self.lock:
            return [path for conn, path in self.seen if conn == number]

    def connection_of(self, index: int) -> int:
        with self.lock:
            return self.seen[index][0]

    def __enter__(self) -> KeepAliveServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in list(self.threads):
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
            with self.lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(0.2)
        buffer = b""
        with sock:
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in buffer:
                    try:
                        piece = sock.recv(4096)
                    except TimeoutError:
                        if self.stopping.is_set():
                            return
                        continue
                    except OSError:
                        return
                    if not piece:
                        return
                    buffer += piece
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                with self.lock:
                    self.seen.append((number, path))
                answer = self.answers.get(path, lambda r: response("404 Not Found", {}))
                with contextlib.suppress(OSError):
                    sock.sendall(answer(headers))
                    if path in self.late:
                        time.sleep(0.2)
                        sock.sendall(self.late[path])


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    with KeepAliveServer() as running:
        yield running


def test_a_304_comes_back_on_the_same_connection(server: KeepAliveServer) -> None:
    server.answers["/feed.xml"] = feed
    with Fetcher() as fetcher:
        first = fetcher.fetch(server.url("/feed.xml"))
        again = fetcher.fetch(server.url("/feed.xml"), etag=first.etag)
        third = fetcher.fetch(server.url("/feed.xml"))
    assert (first.status, first.body, first.etag) == (200, FEED, '"v1"')
    assert (again.status, again.not_modified, again.etag) == (304, True, '"v1"')
    assert third.body == FEED  # the 304 left nothing behind on the connection
    assert server.paths_on(server.connection_of(0)) == ["/feed.xml"] * 3


def test_bytes_beyond_the_length_in_the_same_read_never_reach_the_next_fetch(
    server: KeepAliveServer,
) -> None:
    """The surplus is a whole forged answer: curl sees more than Content-Length and
    drops that connection, so the next request gets its own answer."""
    lie = response("200 OK", {"Content-Length": "10"}, FEED[:10]) + FORGED
    server.answers["/lie.xml"] = lambda request: lie
    server.answers["/feed.xml"] = feed
    with Fetcher() as fetcher:
        assert fetcher.fetch(server.url("/lie.xml")).body == FEED[:10]
        assert fetcher.fetch(server.url("/feed.xml")).body == FEED
    assert server.connection_of(1) != server.connection_of(0)


def test_bytes_sent_after_the_answer_never_reach_the_next_fetch(server: KeepAliveServer) -> None:
    """A forged answer sent later, unasked, waits on the idle connection: curl will
    not reuse a connection with input pending."""
    server.answers["/lie.xml"] = feed
    server.late["/lie.xml"] = FORGED
    server.answers["/feed.xml"] = feed
    with Fetcher() as fetcher:
        assert fetcher.fetch(server.url("/lie.xml")).body == FEED
        time.sleep(0.5)  # the forged answer has arrived by now
        assert fetcher.fetch(server.url("/feed.xml")).body == FEED
    assert server.connection_of(1) != server.connection_of(0)


def test_an_error_does_not_wait_for_its_body(server: KeepAliveServer) -> None:
    """A 404 declaring a body it never sends: the status is the answer, at once."""
    server.answers["/gone.xml"] = lambda r: response("404 Not Found", {"Content-Length": "999"})
    server.answers["/feed.xml"] = feed
    with Fetcher(Limits(read_timeout=30, deadline=30)) as fetcher:
        with pytest.raises(FetchError, match=r"^HTTP 404 Not Found$") as raised:
            fetcher.fetch(server.url("/gone.xml"))
        assert raised.value.status == 404
        assert fetcher.fetch(server.url("/feed.xml")).body == FEED


def test_a_missing_reason_phrase_is_filled_in(server: KeepAliveServer) -> None:
    server.answers["/busy.xml"] = lambda r: response("503 ", {"Content-Length": "0"})
    with Fetcher() as fetcher, pytest.raises(FetchError, match=r"^HTTP 503 Service Unavailable$"):
        fetcher.fetch(server.url("/busy.xml"))


def test_only_the_final_answers_headers_are_kept(server: KeepAliveServer) -> None:
    interim = response("100 Continue", {"X-Interim": "1", "Cache-Control": "max-age=5"})
    final = response(
        "200 OK",
        {
            "Content-Length": str(len(FEED)),
            "Content-Type": "application/rss+xml",
            "Cache-Control": "public",
            "cache-control": "max-age=600",
        },
        FEED,
    )
    server.answers["/feed.xml"] = lambda request: interim + final
    with Fetcher() as fetcher:
        result = fetcher.fetch(server.url("/feed.xml"))
    assert result.body == FEED
    assert "x-interim" not in result.headers
    assert result.headers["cache-control"] == "public, max-age=600"  # joined, names lower-cased
    assert result.max_age == 600
    assert result.content_type == "application/rss+xml"


def test_a_header_that_would_split_the_request_is_refused(server: KeepAliveServer) -> None:
    server.answers["/feed.xml"] = feed
    with Fetcher() as fetcher, pytest.raises(FetchError, match="line break"):
        fetcher.fetch(server.url("/feed.xml"), headers=[("X-Key", "a\r\nX-Evil: 1")])
    assert server.seen == []


def test_each_thread_has_its_own_handle_and_close_ends_them(server: KeepAliveServer) -> None:
    server.answers["/feed.xml"] = feed
    fetcher = Fetcher()
    bodies: list[bytes | None] = []
    threads = [
        threading.Thread(target=lambda: bodies.append(fetcher.fetch(server.url("/feed.xml")).body))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bodies == [FEED] * 3
    fetcher.fetch(server.url("/feed.xml"))
    fetcher.close()
    with pytest.raises(FetchError, match="closed"):
        fetcher.fetch(server.url("/feed.xml"))


def test_non_ascii_urls_and_locations_are_sent_escaped(server: KeepAliveServer) -> None:
    """A config URL in Chinese, and a Location header in raw UTF-8 (it happens), are
    sent %-escaped as UTF-8, as browsers do."""
    server.answers["/%E6%96%B0%E9%97%BB%20a.xml"] = feed
    raw_redirect = b"HTTP/1.1 301 Moved\r\nLocation: /\xe6\x96\xb0.xml\r\nContent-Length: 0\r\n\r\n"
    server.answers["/old.xml"] = lambda request: raw_redirect
    server.answers["/%E6%96%B0.xml"] = feed
    with Fetcher() as fetcher:
        assert fetcher.fetch(server.url("/新闻 a.xml")).body == FEED
        moved = fetcher.fetch(server.url("/old.xml"))
    assert moved.body == FEED
    assert moved.moved_to == server.url("/新.xml")
