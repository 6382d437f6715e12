"""Serve a synthetic corpus over HTTP/1.1 from loopback addresses, in its own process.

asyncio, keep-alive, TCP_NODELAY (without it every keep-alive answer waits ~40 ms
for Nagle), ETag and Last-Modified with 304 answers, optional latency per request.
Feed i is served by host i % hosts (127.0.0.1, 127.0.0.2, ...), so a client can keep
its per-host limit and still have many requests in flight.

Control paths (POST-free, for simplicity): /_add?feed=N adds one entry to feed N,
/_churn?n=K[&start=S] adds one entry to each of K feeds from feed S (wrapping round),
/_reset restores the corpus, /_stats gives the feed requests answered so far, by status,
as JSON.

With --spread, each answer waits latency ± spread seconds (uniform, seeded); with
--no-ttl the RSS feeds carry no <ttl> (which would hold polls back 30 minutes).

Run: python -m bench.server FEEDS ENTRIES [--hosts H] [--latency SECONDS] [--spread SECONDS]
[--seed S];
it prints one JSON line {"bases": [...]} when ready and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import random
import socket
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from bench.corpus import MARKUPS, Corpus

_WAITS = random.Random()  # the latency spread, seeded from --seed


@dataclass
class Document:
    body: bytes
    etag: str
    modified: str
    content_type: str


class Site:
    def __init__(self, corpus: Corpus, ttl: bool = True) -> None:
        self.corpus = corpus
        self.ttl = ttl  # False: the RSS feeds' <ttl> left out, so the poll interval rules
        self.original = [list(feed.entries) for feed in corpus.feeds]
        self.version = 0
        self.answered: dict[int, int] = {}  # feed requests answered, by status
        self.docs: dict[str, Document] = {}
        for feed in corpus.feeds:
            self.render(feed.index)

    def render(self, index: int) -> None:
        feed = self.corpus.feeds[index]
        body = self.corpus.render(feed)
        if not self.ttl:
            body = body.replace(b"<ttl>30</ttl>", b"")
        self.version += 1
        modified = email.utils.formatdate(1640000000 + self.version, usegmt=True)
        etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
        self.docs[feed.path] = Document(body, etag, modified, feed.content_type)

    def control(self, path: str, query: dict[str, list[str]]) -> bytes:
        if path == "/_add":
            index = int(query["feed"][0])
            self.corpus.add_entry(self.corpus.feeds[index])
            self.render(index)
        elif path == "/_churn":
            start = int(query.get("start", ["0"])[0])
            for offset in range(int(query["n"][0])):
                index = (start + offset) % len(self.corpus.feeds)
                self.corpus.add_entry(self.corpus.feeds[index])
                self.render(index)
        elif path == "/_stats":
            return json.dumps(self.answered).encode()
        elif path == "/_reset":
            for feed, entries in zip(self.corpus.feeds, self.original, strict=True):
                if feed.entries != entries:
                    feed.entries = list(entries)
                    self.render(feed.index)
        return b"ok"


class Handler(asyncio.Protocol):
    def __init__(self, site: Site, latency: float, spread: float = 0.0) -> None:
        self.site = site
        self.latency = latency
        self.spread = spread
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            response = self.respond(head)
            if self.latency:
                wait = self.latency + self.spread * (2 * _WAITS.random() - 1)
                asyncio.get_running_loop().call_later(max(0.0, wait), self.send, response)
            else:
                self.send(response)

    def send(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def respond(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = urlsplit(target)
        if parts.path.startswith("/_"):
            return _response(
                200,
                {"Content-Type": "text/plain"},
                self.site.control(parts.path, parse_qs(parts.query)),
            )
        status, response = self.answer(parts.path, headers)
        self.site.answered[status] = self.site.answered.get(status, 0) + 1
        return response

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        doc = self.site.docs.get(path)
        if doc is None:
            return 404, _response(404, {"Content-Type": "text/plain"}, b"not found")
        validators = {"ETag": doc.etag, "Last-Modified": doc.modified}
        if headers.get("if-none-match") == doc.etag or (
            "if-none-match" not in headers and headers.get("if-modified-since") == doc.modified
        ):
            return 304, _response(304, validators, b"")
        return 200, _response(200, {"Content-Type": doc.content_type, **validators}, doc.body)


def _response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body) if status != 304 else 0}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if status != 304 else b"")


async def serve(site: Site, hosts: int, latency: float, spread: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    bases = []
    for number in range(1, hosts + 1):
        host = f"127.0.0.{number}"
        server = await loop.create_server(
            lambda: Handler(site, latency, spread), host, 0, backlog=1024
        )
        servers.append(server)
        bases.append(f"http://{host}:{server.sockets[0].getsockname()[1]}")
    print(json.dumps({"bases": bases}), flush=True)
    # Serve until the parent closes our stdin.
    await loop.run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("feeds", type=int)
    parser.add_argument("entries", type=int)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--spread", type=float, default=0.0)
    parser.add_argument("--no-ttl", action="store_true", help="leave the RSS <ttl> out")
    parser.add_argument("--seed", type=int, default=20211224)
    parser.add_argument("--markup", choices=MARKUPS, default="seed", help="bench/corpus.py")
    args = parser.parse_args()
    _WAITS.seed(args.seed)
    corpus = Corpus(args.feeds, args.entries, seed=args.seed, markup=args.markup)
    site = Site(corpus, ttl=not args.no_ttl)
    asyncio.run(serve(site, args.hosts, args.latency, args.spread))


if __name__ == "__main__":
    main()
