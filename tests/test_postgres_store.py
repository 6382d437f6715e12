"""What only the PostgreSQL store has: several processes writing at once, and the same
published bytes as the SQLite store from the same polls (a real server, tests/pg.py)."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import Config, load_config
from aggregator.errors import StoreError
from aggregator.models import ParsedFeed
from aggregator.publish.publisher import Publisher
from aggregator.store import open_store
from aggregator.store.postgres import PostgresStore
from aggregator.store.postgres.schema import SCHEMA_VERSION
from tests.conftest import config_text
from tests.publishing import SOURCES, START, record, served

NODES = 4
ARTICLES = 30


def _config(tmp_path: Path, name: str, database: str, sources: list[dict[str, Any]]) -> Config:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "sources.toml"
    settings = {
        "database": database,
        "output_dir": str(folder / "feeds"),
        "base_url": "http://feeds.example.org",
    }
    path.write_text(config_text(sources, **settings), encoding="utf-8")
    return load_config(path, env={})


def _polls(store: Any, config: Config) -> None:
    """The same polls, in the same order: new entries, an article carried by both
    sources, an edit, a copy that takes over, a renamed source feed."""
    now = START
    for step, (source_id, numbers, edits) in enumerate(
        [
            ("yaowen", range(1, 8), {}),
            ("jiaotong", range(5, 12), {}),
            ("yaowen", range(1, 8), {3: "第3条新闻（更新）"}),
            ("jiaotong", range(5, 12), {6: "第6条新闻：交通版"}),
        ]
    ):
        source = config.source(source_id)
        assert source is not None
        now += timedelta(minutes=5)
        entries = [
            record(n, title=edits[n], updated=now) if n in edits else record(n) for n in numbers
        ]
        title = f"{source.name}（{'改名' if step == 3 else '原始'}）"
        feed = ParsedFeed("rss20", title, f"http://finews.example.cn/{source_id}/", "", ())
        store.ingest(source, feed, entries, now)


def _files(out: Path) -> dict[str, bytes]:
    return served(out)


def test_migrations_are_applied_once(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        assert store.schema_version == SCHEMA_VERSION
    with PostgresStore(postgres_url) as store:  # a second node: nothing to do
        assert store.schema_version == SCHEMA_VERSION
        assert store.entry_count() == 0


def test_same_polls_publish_the_same_bytes_as_sqlite(tmp_path: Path, postgres_url: str) -> None:
    lite = _config(tmp_path, "sqlite", str(tmp_path / "a.db"), SOURCES)
    pg = _config(tmp_path, "postgres", postgres_url, SOURCES)
    with open_store(lite.settings.database) as store:
        store.sync_sources(lite.sources)
        _polls(store, lite)
        Publisher(lite, store).publish()
        lite_rows = store.source_rows()
    with open_store(postgres_url) as store:
        store.sync_sources(pg.sources)
        _polls(store, pg)
        Publisher(pg, store).publish()  # type: ignore[arg-type]
        pg_rows = store.source_rows()
    published = _files(lite.settings.output_dir)
    assert len(published) > 10
    assert _files(pg.settings.output_dir) == published
    assert pg_rows == lite_rows


def _node(url: str, node: int, barrier: Any, config_path: str, errors: Any) -> None:
    """One node: stores each article from its own source the moment the others do."""
    config = load_config(Path(config_path), env={})
    source = config.sources[node]
    feed = ParsedFeed("rss20", source.name, "http://finews.example.cn/", "", ())
    try:
        with open_store(url) as store:
            for number in range(ARTICLES):
                barrier.wait(timeout=60)
                store.ingest(source, feed, [record(number)], START + timedelta(minutes=number))
    except Exception as exc:  # reported to the test, which fails with it
        errors.put(f"node {node}: {exc!r}")


@pytest.mark.parametrize("nodes", [NODES])
def test_one_article_from_several_nodes_at_once_is_one_entry(
    tmp_path: Path, postgres_url: str, nodes: int
) -> None:
    sources = [
        {"id": f"node{n}", "name": f"来源 {n}", "url": f"http://n{n}.example.cn/", "category": "c"}
        for n in range(nodes)
    ]
    config = _config(tmp_path, "cluster", postgres_url, sources)
    with open_store(postgres_url) as store:
        store.sync_sources(config.sources)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(nodes)
    errors = context.Queue()
    processes = [
        context.Process(target=_node, args=(postgres_url, n, barrier, str(config.path), errors))
        for n in range(nodes)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert [p.exitcode for p in processes] == [0] * nodes
    with open_store(postgres_url) as store:
        assert store.entry_count() == ARTICLES
        everyone = [s.id for s in config.sources]
        for number in range(ARTICLES):
            assert store.entry_sources(record(number).code) == everyone


def test_one_store_shared_by_many_threads_stores_each_article_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """A node's poll threads share one store (its pool of connections): the same
    article from every thread at the same moment is one entry carried by all; each
    thread's batch is its own (another's conflict fails it whole, never half)."""
    threads = 12
    sources = [
        {"id": f"t{n}", "name": f"来源 {n}", "url": f"http://t{n}.example.cn/", "category": "c"}
        for n in range(threads)
    ]
    config = _config(tmp_path, "threads", postgres_url, sources)
    barrier = threading.Barrier(threads)
    errors: list[str] = []

    def poll_thread(store: Any, source: Any) -> None:
        feed = ParsedFeed("rss20", source.name, "http://finews.example.cn/", "", ())
        try:
            for number in range(ARTICLES):
                barrier.wait(timeout=60)
                when = START + timedelta(minutes=number)
                try:  # as `aggregator poll` stores: in a batch, else alone (pollrun)
                    with store.batch():
                        store.ingest(source, feed, [record(number)], when)
                except StoreError:  # a conflict fails the batch whole; alone, it is retried
                    store.ingest(source, feed, [record(number)], when)
        except Exception as exc:  # reported to the test, which fails with it
            errors.append(f"{source.id}: {exc!r}")

    with open_store(postgres_url) as store:
        store.sync_sources(config.sources)
        workers = [
            threading.Thread(target=poll_thread, args=(store, source)) for source in config.sources
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert errors == []
        assert store.entry_count() == ARTICLES
        everyone = sorted(s.id for s in config.sources)
        for number in range(ARTICLES):
            assert sorted(store.entry_sources(record(number).code)) == everyone
