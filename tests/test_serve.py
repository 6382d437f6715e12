"""Serving the output folder: a subscriber's view over a real HTTP server."""

from __future__ import annotations

import gzip
import http.client
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import pytest

from aggregator.config.loader import load_config
from aggregator.publish.publisher import entry_id
from aggregator.serve.server import FeedServer, accepts_gzip, max_age_for, resolve_path
from aggregator.store.sqlite import SqliteStore
from tests.publishing import SOURCES, Site, record


def get(
    server: FeedServer, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=10)
    try:
        # http.client sends the path as given: no client-side normalisation of "..".
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def served(tmp_path: Path, write_config: Any) -> Iterator[tuple[Site, FeedServer]]:
    output = tmp_path / "project" / "feeds"
    output.mkdir(parents=True)
    server = FeedServer(("127.0.0.1", 0), output)
    server.start()
    config = load_config(write_config(SOURCES, base_url=server.url))
    server.max_age = max_age_for(config)
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources)
        site = Site(config, store)
        site.add("yaowen", record(1), record(2))
        site.add("jiaotong", record(3))
        site.publisher.publish()
        yield site, server
    server.shutdown()
    server.server_close()


def test_subscriber_fetch_304_then_new_entry(served: tuple[Site, FeedServer]) -> None:
    site, server = served
    status, headers, body = get(server, "/tag/jiaotong.xml")
    assert status == 200
    assert headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=300"  # the 5-minute source
    etag, modified = headers["etag"], headers["last-modified"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert len(feedparser.parse(body).entries) == 1

    status, again, body = get(server, "/tag/jiaotong.xml", **{"If-None-Match": etag})
    assert (status, body, again["etag"]) == (304, b"", etag)
    assert get(server, "/tag/jiaotong.xml", **{"If-Modified-Since": modified})[0] == 304
    # ETags are stable: publishing again with nothing new changes nothing.
    assert site.publisher.publish() == []
    assert get(server, "/tag/jiaotong.xml", **{"If-None-Match": etag})[0] == 304

    site.publisher.publish(site.add("jiaotong", record(4)))
    status, headers, body = get(server, "/tag/jiaotong.xml", **{"If-None-Match": etag})
    assert status == 200 and headers["etag"] != etag
    ids = [e.id for e in feedparser.parse(body).entries]
    assert entry_id(record(4).code) in ids and len(ids) == 2
    # A feed the new entry is not in still answers 304 to its old ETag.
    status, headers, _ = get(server, "/source/yaowen.xml")
    assert get(server, "/source/yaowen.xml", **{"If-None-Match": headers["etag"]})[0] == 304


def test_gzip_head_and_content_types(served: tuple[Site, FeedServer]) -> None:
    _, server = served
    status, plain_headers, plain = get(server, "/all.json")
    assert plain_headers["content-type"] == "application/feed+json; charset=utf-8"
    status, headers, body = get(server, "/all.json", **{"Accept-Encoding": "gzip, br"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    assert headers["etag"] != plain_headers["etag"]  # strong ETags differ per encoding
    assert headers["vary"] == "Accept-Encoding"
    refused = get(server, "/all.json", **{"Accept-Encoding": "gzip;q=0"})[1]
    assert "content-encoding" not in refused
    status, headers, body = get(server, "/feeds.opml", method="HEAD")
    assert status == 200 and body == b""
    assert headers["content-type"] == "text/x-opml; charset=utf-8"
    assert int(headers["content-length"]) == len(get(server, "/feeds.opml")[2])
    status, headers, body = get(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'type="application/feed+json"' in body


UNSAFE = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/category/..%2f..%2fsecret.txt",
    "/%252e%252e/secret.txt",
    "/..\\secret.txt",
    "/escape/secret.txt",
    "/.hidden.xml",
    "/category/",
    "/no/such/feed.xml",
    "/all.xml%00.html",
]


def test_unsafe_and_unknown_paths_are_404(served: tuple[Site, FeedServer]) -> None:
    site, server = served
    (site.out.parent / "secret.txt").write_text("secret")
    os.symlink(site.out.parent, site.out / "escape")
    (site.out / ".hidden.xml").write_text("<feed/>")
    for path in UNSAFE:
        status, _, body = get(server, path)
        assert status == 404, path
        assert b"secret" not in body


def test_resolve_path_and_helpers(tmp_path: Path) -> None:
    (tmp_path / "all.xml").write_text("x")
    (tmp_path / "index.html").write_text("x")
    assert resolve_path(tmp_path, "/all.xml?x=1") == (tmp_path / "all.xml").resolve()
    assert resolve_path(tmp_path, "/") == (tmp_path / "index.html").resolve()
    assert resolve_path(tmp_path, "/../all.xml") is None
    assert accepts_gzip("deflate, gzip;q=0.5")
    assert not accepts_gzip("identity")
    assert not accepts_gzip(None)
