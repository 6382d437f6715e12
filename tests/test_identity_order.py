"""The same feeds give the same store and byte-identical published files, whatever the
order they are polled and stored in and however many fetches or worker processes run.

The feeds carry the cases where arrival order used to decide what was kept: one article
in several sources with different dates, titles and guids (by share code, by permalink
guid, by link), copies that tie on every date, a copy without dates, and source-scoped
entries (short guids shared by several feeds, description-only items)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.config.loader import Config, load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.publish.publisher import Publisher
from aggregator.run.pollrun import poll_many
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock, config_text
from tests.feeds import SHARE, rss_entries
from tests.feedserver import FeedServer
from tests.publishing import served

TRAM = "http://transit.example.com/2022/01/tram"
POOL = "http://links.example.org/pool"


def day(n: int) -> str:
    """An RFC 822 date n days after Monday 3 January 2022."""
    weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][n % 7]
    return f"{weekday}, {3 + n:02d} Jan 2022 08:00:00 +0000"


def shared(
    code: str, guid: str, title: str, when: str | None, body: str = "正文"
) -> dict[str, str]:
    item = {"guid": guid, "title": title, "link": SHARE + code + "&from=" + guid, "body": body}
    return item | ({"date": when} if when else {})


FEEDS: dict[str, list[dict[str, str]]] = {
    "alpha": [
        shared("NW1", "a-1", "地铁新线 v1", day(2)),
        shared("NW2", "a-2", "同一份", day(3)),
        {"guid": "1", "title": "alpha's first", "link": "http://alpha.example.org/1"},
        {"guid": "2", "title": "alpha's second", "date": day(1)},
    ],
    "bravo": [
        shared("NW1", "b-1", "地铁新线 v2", day(4)),  # the newest copy of NW1
        shared("NW2", "b-2", "同一份", day(3)),  # ties with alpha's on every date
        shared("NW3", "b-3", "没有日期的一份", None),  # no date: counts as seen now
        {"guid": "1", "title": "bravo's first", "link": "http://bravo.example.org/1"},
    ],
    "charlie": [
        shared("NW1", "c-1", "地铁新线 v2（交通版）", day(4)),  # ties with bravo's
        shared("NW3", "c-3", "有日期的一份", day(5)),
        {"guid": TRAM, "permalink": "1", "title": "Tram", "link": TRAM, "date": day(2)},
    ],
    "delta": [
        {"guid": TRAM, "permalink": "1", "title": "Tram (digest)", "link": TRAM, "date": day(1)},
        {"title": "Pool closed", "link": POOL, "date": day(2), "body": "Repairs."},
        {"body": "A note without anything else."},
        {"body": "Another note."},
    ],
    "echo": [
        {"title": "Pool closed for repairs", "link": POOL, "date": day(2), "body": "Until May."},
        {"guid": "1", "title": "echo's first", "link": "http://echo.example.org/1"},
        {"body": "A note without anything else."},  # the same text as delta's: not merged
        {"title": "", "date": day(6), "body": "<p>Dated, untitled.</p>"},
    ],
}
RULE = {"param": "infoCode"}


def write_project(folder: Path, server: FeedServer) -> Config:
    """The same config for every run (the order of its sources shows in the index)."""
    sources = [
        {
            "id": source_id,
            "name": source_id.title(),
            "url": server.set(f"/{source_id}.xml", rss_entries(items, title=source_id)),
            "category": "新闻" if source_id < "d" else "city",
            "tags": [source_id[0]],
            "share_code": RULE,
        }
        for source_id, items in FEEDS.items()
    ]
    path = folder / "config" / "sources.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        config_text(
            sources,
            database=str(folder / "data" / "test.db"),
            output_dir=str(folder / "feeds"),
            base_url="http://feeds.example.org",
        ),
        encoding="utf-8",
    )
    return load_config(path)


STORED = {
    "entries": "SELECT * FROM entries ORDER BY code",
    "entry_sources": "SELECT * FROM entry_sources ORDER BY code, source_id",
    "entry_categories": "SELECT * FROM entry_categories ORDER BY 1, 2",
    "entry_tags": "SELECT * FROM entry_tags ORDER BY 1, 2",
    "feed_positions": "SELECT * FROM feed_positions ORDER BY 1, 2, 4",
}


def run(
    folder: Path, server: FeedServer, order: list[str], workers: int, processes: int = 1
) -> tuple[dict[str, list[Any]], dict[str, bytes]]:
    """Poll every source once in this order, publish; (stored rows, published files)."""
    config = write_project(folder, server)
    by_id = {source.id: source for source in config.sources}
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        sources = [by_id[source_id] for source_id in order]
        outcomes = poll_many(sources, store, fetcher, workers, clock=Clock(), processes=processes)
        assert {o.result for o in outcomes} == {"ok"}
        Publisher(config, store).publish()
        rows = {table: [tuple(r) for r in store.db.execute(q)] for table, q in STORED.items()}
    output = config.settings.output_dir
    files = served(output)
    return rows, files


# The reference run of each server (the published files name its port).
_reference: dict[str, tuple[dict[str, list[Any]], dict[str, bytes]]] = {}


def reference(server: FeedServer, folder: Path) -> tuple[dict[str, list[Any]], dict[str, bytes]]:
    if server.base not in _reference:
        _reference[server.base] = run(folder, server, sorted(FEEDS), 1)
    return _reference[server.base]


def test_the_reference_run_shows_the_ranked_copies(server: FeedServer, tmp_path: Path) -> None:
    rows, files = reference(server, tmp_path / "reference")
    shown = {row[0]: (row[3], row[13]) for row in rows["entries"]}
    assert shown["NW1"] == ("地铁新线 v2", "bravo")  # newest; ties with charlie's: bravo < charlie
    assert shown["NW2"] == ("同一份", "alpha")  # identical copies: the first source by id
    assert shown["NW3"] == ("没有日期的一份", "bravo")  # seen now: newer than any date
    assert shown["guid:" + TRAM] == ("Tram", "charlie")
    assert shown["link:" + POOL] == ("Pool closed", "delta")  # a tie: the first source by id
    assert {c for c in shown if c.startswith("guid@")} == {
        "guid@alpha:1",
        "guid@alpha:2",
        "guid@bravo:1",
        "guid@echo:1",
    }
    assert sum(c.startswith("hash@") for c in shown) == 4  # delta's two notes, echo's two
    assert "all.xml" in files and "index.html" in files


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(order=st.permutations(sorted(FEEDS)), workers=st.sampled_from([1, 2, 5]))
def test_any_order_and_any_worker_count_give_the_same_rows_and_bytes(
    server: FeedServer, tmp_path_factory: Any, order: list[str], workers: int
) -> None:
    expected = reference(server, tmp_path_factory.mktemp("reference"))
    assert run(tmp_path_factory.mktemp("run"), server, order, workers) == expected


def test_worker_processes_give_the_same_rows_and_bytes(server: FeedServer, tmp_path: Path) -> None:
    expected = reference(server, tmp_path / "reference")
    order = sorted(FEEDS, reverse=True)
    assert run(tmp_path / "processes", server, order, 2, processes=2) == expected
