"""Real-world-shaped feeds through the whole pipeline: fetched over HTTP with the
headers their servers send, parsed, stored, published as valid Atom.

The corpus (tests/corpus/manifest.toml) is written in the shapes of real
publishers: WordPress, Blogger, Medium, Substack, YouTube, a podcast with
iTunes tags, Chinese news sites in GBK/GB2312/GB18030 and Big5, RSS 1.0,
Atom 0.3, JSON Feed, GitHub releases, UTF-16.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests.atomcheck import problems
from tests.feedserver import FeedServer

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST: list[dict[str, Any]] = tomllib.loads((CORPUS / "manifest.toml").read_text("utf-8"))[
    "feed"
]


CASES = [pytest.param(item, id=item["file"]) for item in MANIFEST]


@pytest.fixture(scope="module")
def corpus_server() -> Iterator[FeedServer]:
    """One server for the module: stopping one costs half a second."""
    instance = FeedServer()
    threading.Thread(target=instance.serve_forever, daemon=True).start()
    yield instance
    instance.shutdown()
    instance.server_close()


@pytest.mark.parametrize("item", CASES)
def test_feed_goes_through_the_whole_pipeline(
    item: dict[str, Any], corpus_server: FeedServer, write_config: Any
) -> None:
    server = corpus_server
    body = (CORPUS / item["file"]).read_bytes()
    url = server.set("/" + item["file"], body, content_type=item["content_type"])
    source: dict[str, Any] = {
        "id": "corpus",
        "name": item["file"],
        "url": url,
        "category": "语料",
        "tags": ["真实形状"],
        "allow_private": True,
    }
    if "share_code" in item:
        source["share_code"] = {"param": item["share_code"]}
    config = load_config(write_config([source]), env={})
    with SqliteStore(config.settings.database) as store, Fetcher(Limits()) as fetcher:
        outcome = poll_source(config.sources[0], store, fetcher)
        assert outcome.result == "ok", outcome.error
        assert outcome.new == item["entries"]
        titles = {row["title"] for row in store.db.query("SELECT title FROM entries")}
        assert item["title"] in titles
        written = Publisher(config, store).publish()
    atom = [p for p in written if p.suffix == ".xml"]
    assert len(atom) >= 4  # all, category, tag, source
    for path in atom:
        assert problems(path.read_bytes()) == [], path
