"""The built-in server: content types, ETag and 304, gzip, HEAD, safe paths."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aggregator.serve.server import FeedServer


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
    with httpx.Client(base_url=server.url) as client:
        first = client.get("/tag/x.xml", headers={"Accept-Encoding": "identity"})
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert first.text == "<feed>三秦</feed>"
        etag = first.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        again = client.get("/tag/x.xml", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        since = client.get(
            "/tag/x.xml", headers={"If-Modified-Since": first.headers["last-modified"]}
        )
        assert since.status_code == 304
        (root / "tag" / "x.xml").write_bytes(b"<feed>new</feed>")
        changed = client.get("/tag/x.xml", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_gzip_head_index_and_routes(served: tuple[FeedServer, Path]) -> None:
    server, _ = served
    with httpx.Client(base_url=server.url) as client:
        raw = client.get("/tag/x.xml", headers={"Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert raw.text == "<feed>三秦</feed>"  # httpx decoded it
        head = client.head("/tag/x.xml")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/").text == "<html>index</html>"
        assert client.get("/healthz").text == "ok"


@pytest.mark.parametrize(
    "path", ["/../secret.txt", "/%2e%2e/secret.txt", "/tag/../../secret.txt", "/nope.xml", "/tag/"]
)
def test_paths_cannot_escape_and_unknown_is_404(served: tuple[FeedServer, Path], path: str) -> None:
    server, _ = served
    response = httpx.get(server.url + path)
    assert response.status_code == 404
    assert b"secret" not in response.content


def test_gzip_body_is_real_gzip(served: tuple[FeedServer, Path]) -> None:
    server, _ = served
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream("GET", "/tag/x.xml", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        body = b"".join(response.iter_raw())
    assert gzip.decompress(body).decode() == "<feed>三秦</feed>"
