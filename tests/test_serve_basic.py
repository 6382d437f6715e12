"""The built-in server: content types, ETag and 304, gzip, HEAD, safe paths."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.serve.server import FeedServer
from tests.test_serve import get


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FeedServer, Path]]:
    root = tmp_path / "feeds"
    (root / "tag").mkdir(parents=True)
    (root / "tag" / "x.xml").write_bytes("<feed>三秦</feed>".encode())
    (root / "index.html").write_text("<html>index</html>", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    server = FeedServer(
        ("127.0.0.1", 0), root, routes={"/healthz": lambda: (200, "text/plain", b"ok")}
    )
    server.start()
    yield server, root
    server.shutdown()
    server.server_close()


def test_feed_has_type_etag_and_304(served: tuple[FeedServer, Path]) -> None:
    server, root = served
    status, headers, body = get(server, "/tag/x.xml", **{"Accept-Encoding": "identity"})
    assert status == 200
    assert headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert body.decode() == "<feed>三秦</feed>"
    etag = headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = get(server, "/tag/x.xml", **{"If-None-Match": etag})
    assert again[0] == 304 and again[2] == b""
    since = get(server, "/tag/x.xml", **{"If-Modified-Since": headers["last-modified"]})
    assert since[0] == 304
    (root / "tag" / "x.xml").write_bytes(b"<feed>new</feed>")
    changed = get(server, "/tag/x.xml", **{"If-None-Match": etag})
    assert changed[0] == 200 and changed[1]["etag"] != etag


def test_gzip_head_index_and_routes(served: tuple[FeedServer, Path]) -> None:
    server, _ = served
    _, headers, body = get(server, "/tag/x.xml", **{"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).decode() == "<feed>三秦</feed>"  # real gzip
    status, _, body = get(server, "/tag/x.xml", "HEAD")
    assert status == 200 and body == b""
    assert get(server, "/")[2] == b"<html>index</html>"
    assert get(server, "/healthz")[2] == b"ok"


@pytest.mark.parametrize(
    "path", ["/../secret.txt", "/%2e%2e/secret.txt", "/tag/../../secret.txt", "/nope.xml", "/tag/"]
)
def test_paths_cannot_escape_and_unknown_is_404(served: tuple[FeedServer, Path], path: str) -> None:
    server, _ = served
    status, _, body = get(server, path)
    assert status == 404
    assert b"secret" not in body
