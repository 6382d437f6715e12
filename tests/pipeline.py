"""One source through the whole pipeline for tests: fetched from a real server on
127.0.0.1 (or read from a real file), parsed, stored in a real SQLite file, published
as real files, every published document checked (tests/atomcheck.py, jsonfeedcheck)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from aggregator.config.loader import Config, load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests import atomcheck, jsonfeedcheck, rsscheck
from tests.conftest import Clock
from tests.publishing import served

A = "{http://www.w3.org/2005/Atom}"


@dataclass
class Run:
    config: Config
    entries: list[dict[str, Any]]  # the stored rows, by code
    source: dict[str, Any]  # the source's stored row
    files: dict[str, bytes]  # every published file, by path under the output folder

    def atom(self, path: str = "all.xml") -> etree._Element:
        return etree.fromstring(self.files[path])

    def atom_entries(self, path: str = "all.xml") -> list[etree._Element]:
        return self.atom(path).findall(f"{A}entry")


def run_source(
    url: str,
    write_config: Any,
    clock: Clock | None = None,
    settings: dict[str, Any] | None = None,
    **fields: Any,
) -> Run:
    """Poll the source at url once, publish, check every published document, and give
    what was stored and published. `fields` go into the source's config table (None
    leaves a key out), `settings` into [settings]."""
    source = {
        "id": "s",
        "name": "来源",
        "url": url,
        "category": "测试",
        "tags": ["标签"],
        "share_code": {"param": "infoCode"},  # codes as the project's sources have them
    }
    table = {k: v for k, v in {**source, **fields}.items() if v is not None}  # None: unset
    config = load_config(write_config([table], **(settings or {})), env={})
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcome = poll_source(config.sources[0], store, fetcher, clock=clock or Clock())
        assert outcome.result == "ok", outcome.error
        Publisher(config, store).publish()
        entries = list(store.db.query("SELECT * FROM entries ORDER BY code"))
        (row,) = [r for r in store.source_rows() if r["id"] == "s"]
    out = config.settings.output_dir
    files = served(out)
    for name, data in files.items():
        found = []
        if name.endswith(".xml"):
            found = atomcheck.problems(data)
        elif name.endswith(".json"):
            found = jsonfeedcheck.problems(data)
        elif name.endswith(".rss"):
            # A file: source's relative links are kept as written (in every format).
            found = rsscheck.problems(data, relative_links=url.startswith("file:"))
        assert not found, f"{name}:\n" + "\n".join(found)
    return Run(config, entries, row, files)
