"""The built-in server under many subscribers at once, while the daemon republishes.

Hundreds of clients hold keep-alive connections and revalidate with their
ETag (some asking for gzip) while a source keeps changing and the daemon
keeps rewriting the feeds. Every answer must be right: a 200 carries a whole
document whose ETag names exactly those bytes (one ETag, one body, across all
clients); a 304 only for an ETag the client got from us; no error, no reset;
and once the republishing stops, every client gets the final document.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import threading
import time
from typing import Any

from lxml import etree

from tests.daemonkit import running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

CLIENTS = 200
ROUNDS = 4
PATHS = ("/all.xml", "/category/jiaotong.xml", "/all.json")


class Client(threading.Thread):
    def __init__(self, port: int, number: int, ledger: Ledger, start: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.gzip = number % 3 == 0
        self.path = PATHS[number % len(PATHS)]
        self.ledger = ledger
        self.go = start
        self.etag = ""
        self.body = b""
        self.problems: list[str] = []
        self.answers: dict[int, int] = {}

    def request(self, conn: http.client.HTTPConnection) -> None:
        headers = {"Accept-Encoding": "gzip"} if self.gzip else {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        conn.request("GET", self.path, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        self.answers[answer.status] = self.answers.get(answer.status, 0) + 1
        if answer.status == 304:
            if not self.etag or answer.getheader("ETag") != self.etag:
                self.problems.append(f"304 for {self.etag!r} answered {answer.getheader('ETag')}")
            return
        if answer.status != 200:
            self.problems.append(f"status {answer.status}")
            return
        if self.gzip:
            if answer.getheader("Content-Encoding") != "gzip":
                self.problems.append("asked for gzip, got none")
                return
            data = gzip.decompress(data)
        if self.path.endswith(".xml"):
            etree.fromstring(data)  # a whole document
        self.etag = answer.getheader("ETag") or ""
        self.body = data
        self.ledger.record(self.etag, data, self.problems)

    def run(self) -> None:
        self.go.wait(30)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            # At least ROUNDS requests, and on until a republish has been seen (a fast
            # server can otherwise answer every round before the daemon rewrites a feed).
            rounds, deadline = 0, time.monotonic() + 20
            while rounds < ROUNDS or (not self.ledger.changed() and time.monotonic() < deadline):
                self.request(conn)
                rounds += 1
                # Past ROUNDS, ask rarely: the daemon publishes in this process too.
                time.sleep(0.01 if rounds < ROUNDS else 0.25)
            conn.close()
        except Exception as exc:  # any failure is a wrong answer
            self.problems.append(f"{type(exc).__name__}: {exc}")


class Ledger:
    """Which bytes each ETag named: one ETag must always mean one body."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: dict[str, str] = {}

    def changed(self) -> bool:
        """More documents than paths: some feed was republished while being read."""
        with self.lock:
            return len(self.bodies) > len(PATHS)

    def record(self, etag: str, body: bytes, problems: list[str]) -> None:
        digest = hashlib.sha256(body).hexdigest()
        with self.lock:
            if self.bodies.setdefault(etag, digest) != digest:
                problems.append(f"ETag {etag} named two different documents")


def test_hundreds_of_subscribers_while_the_daemon_republishes(
    server: FeedServer, write_config: Any
) -> None:
    items = [Item(f"NW{n:06d}", f"第{n}条 凝神聚力保畅通") for n in range(30)]
    url = server.set("/feed.xml", rss(items))
    path = write_config(
        [
            {
                "id": "s",
                "name": "源",
                "url": url,
                "category": "交通",
                "interval": 0.2,
                "allow_private": True,
                "share_code": {"param": "infoCode"},
            }
        ],
        publish_delay=0.05,
    )
    with running(path) as daemon:
        assert daemon.server
        port = daemon.server.server_address[1]
        wait_for(lambda: (daemon.config.settings.output_dir / "category" / "jiaotong.xml").exists())
        stop = threading.Event()

        def newsroom() -> None:  # the source changes all the time: feeds are rewritten
            n = 30
            while not stop.wait(0.05):
                items[n % 30] = Item(f"NW{n:06d}", f"第{n}条 新消息")
                server.set("/feed.xml", rss(items))
                n += 1

        ledger, start = Ledger(), threading.Event()
        clients = [Client(port, n, ledger, start) for n in range(CLIENTS)]
        changer = threading.Thread(target=newsroom, daemon=True)
        changer.start()
        for client in clients:
            client.start()
        start.set()
        for client in clients:
            client.join(60)
        stop.set()
        changer.join()
        last = items[(n_last := max(int(i.code[2:]) for i in items)) % 30].code
        assert daemon.store
        store = daemon.store
        wait_for(lambda: store.entry_sources(last) == ["s"], what=f"the last change ({n_last})")
        time.sleep(1.0)  # its publish batch; after that nothing changes any more
        problems = [p for c in clients for p in c.problems]
        assert problems == []
        assert all(not c.is_alive() for c in clients)
        answered = {status for c in clients for status in c.answers}
        assert answered <= {200, 304} and 200 in answered
        assert len(ledger.bodies) > len(PATHS)  # the feeds did change under the clients
        # At rest, one more revalidation each gets the document as it is on disk.
        output = daemon.config.settings.output_dir
        for client in clients:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            client.request(conn)
            conn.close()
            assert client.problems == []
            assert client.body == (output / client.path.lstrip("/")).read_bytes()
