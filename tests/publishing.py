"""A small published site for tests: a real config file, a real SQLite store, real files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from aggregator.config.loader import Config, load_config
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.publish.publisher import Publisher
from aggregator.publish.renderpack import Render, unpack
from aggregator.store.records import FeedKey
from aggregator.store.sqlite import SqliteStore
from tests.feeds import SHARE

A = "{http://www.w3.org/2005/Atom}"
START = datetime(2021, 12, 24, 3, 0, 26, tzinfo=UTC)

SOURCES: list[dict[str, Any]] = [
    {
        "id": "yaowen",
        "name": "三秦都市报 · 要闻",
        "url": "http://finews.example.cn/yaowen.xml",
        "category": "三秦都市报",
        "category_slug": "sanqindushibao",
        "tags": ["三秦都市报新闻"],
        "interval": "5m",
    },
    {
        "id": "jiaotong",
        "name": "三秦都市报 · 交通",
        "url": "http://finews.example.cn/jiaotong.xml",
        "category": "陕西交通",
        "tags": ["三秦都市报新闻", "交通"],
        "interval": "15m",
    },
]


def record(number: int, when: datetime | None = None, **fields: Any) -> EntryRecord:
    code = f"NW2021122403{number:08d}"
    values: dict[str, Any] = {
        "guid": f"guid-{number}",
        "title": f"第{number}条新闻：宝鸡交警保障道路安全畅通",
        "link": SHARE + code,
        "published": when or START + timedelta(minutes=number),
        "updated": when or START + timedelta(minutes=number),
        "author": "记者 王晨" if number % 2 else "",
        "content": f"<p>正文 {number}。</p>",
        "code": code,
        "code_rule": "param:infoCode",
    }
    values.update(fields)
    return EntryRecord(**values)


class Site:
    def __init__(self, config: Config, store: SqliteStore) -> None:
        self.config = config
        self.store = store
        self.publisher = Publisher(config, store)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    @property
    def out(self) -> Path:
        return self.config.settings.output_dir

    def add(self, source_id: str, *entries: EntryRecord) -> set[FeedKey]:
        """Store entries as one poll of a source would; returns the feeds that changed."""
        source = self.config.source(source_id)
        assert source is not None
        feed = ParsedFeed(
            "rss20",
            f"{source.name}（原始）",
            f"http://finews.example.cn/{source_id}/",
            "",
            tuple(entries),
        )
        self.now += timedelta(minutes=1)
        return self.store.ingest(source, feed, list(entries), self.now).changed_feeds

    def files(self) -> dict[str, bytes]:
        return served(self.out)

    def read_url(self, url: str) -> bytes:
        base = self.config.settings.base_url + "/"
        assert url.startswith(base), url
        return (self.out / url.removeprefix(base)).read_bytes()


@contextmanager
def site(write_config: Any, **settings: Any) -> Iterator[Site]:
    config = load_config(write_config(SOURCES, **settings))
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources)
        yield Site(config, store)


def served(folder: Path) -> dict[str, bytes]:
    """Every file under a published folder that a subscriber can fetch (dot files, such
    as the publish lock and record, are the publisher's own), by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def links(root: etree._Element, rel: str) -> list[str]:
    return [link.get("href", "") for link in root.findall(f"{A}link") if link.get("rel") == rel]


def entry_ids(root: etree._Element) -> list[str]:
    return [e.findtext(f"{A}id") or "" for e in root.findall(f"{A}entry")]


def path_of(url: str) -> str:
    return urlsplit(url).path


def cached_renders(store: SqliteStore) -> dict[str, dict[str, Render]]:
    """The render cache: each entry's fragments, by code and format."""
    rows = store.db.execute(
        "SELECT r.code, r.pack, e.content FROM rendered_entries r JOIN entries e USING (code)"
    )
    return {code: unpack(packed, content) for code, packed, content in rows}
