"""The history the status page draws: each source's last polls with their fetch times
and outcomes (bounded, in its own row), and per UTC day its failed polls and new
entries, pruned after HISTORY_DAYS; kept by the store as polls are recorded."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from aggregator.config.loader import load_config
from aggregator.errors import FetchError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import FetchRequest
from aggregator.run.poll import poll_source
from aggregator.store.records import HISTORY_DAYS, RECENT_POLLS, PollDay, PollRecord
from aggregator.store.retention import cleanup
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.migrations import MIGRATIONS
from tests.conftest import Clock
from tests.daemonkit import SlowFeed
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEMS = [
    Item("NW202112240805120001", "西安地铁新线路开通试运营", guid="a-1"),
    Item("NW202112241000000004", "西宝高速部分路段施工 请绕行", guid="a-2"),
]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def poll(at: datetime, result: str = "not_modified", seconds: float = 0.1) -> PollRecord:
    failed = result in ("error", "gone")
    return PollRecord(
        last_poll_at=at,
        last_result=result,
        last_http_status=503 if failed else 304,
        last_fetch_seconds=seconds,
        error_count=1 if failed else 0,
    )


def since(store: SqliteStore, day: datetime = T0 - timedelta(days=HISTORY_DAYS)) -> Any:
    return store.status_rows(day)


def test_recent_polls_keep_only_the_last_ones(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        for n in range(RECENT_POLLS + 7):
            store.record_polls([("a", poll(T0 + timedelta(minutes=n), seconds=n / 10))])
        recent = since(store).recent
        assert [p.at for p in recent] == [
            T0 + timedelta(minutes=n) for n in range(7, RECENT_POLLS + 7)
        ]
        assert recent[-1].fetch_seconds == (RECENT_POLLS + 6) / 10
        assert recent[-1].result == "not_modified" and recent[-1].http_status == 304


def test_a_source_polled_twice_in_one_batch_keeps_both_polls(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        store.record_polls(
            [
                ("a", poll(T0)),
                ("b", poll(T0)),
                ("a", poll(T0 + timedelta(minutes=2), "error", 5.0)),
                ("a", poll(T0 + timedelta(minutes=4))),
            ]
        )
        recent = [p for p in since(store).recent if p.source_id == "a"]
        assert [p.result for p in recent] == ["not_modified", "error", "not_modified"]
        assert store.source_state("a").error_count == 0  # the last poll's state


def test_days_count_failed_polls_and_only_they_write_a_day(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        store.record_polls([("a", poll(T0, seconds=0.5))])
        assert since(store).days == []  # a poll that went well writes its source's row only
        store.record_polls([("a", poll(T0 + timedelta(hours=1), "error", seconds=2.0))])
        store.record_polls([("a", poll(T0 + timedelta(hours=2), "gone", seconds=2.0))])
        store.record_polls([("a", poll(T0 + timedelta(days=1), "error", seconds=0.25))])
        # Not a poll (no last_poll_at): state only, no history.
        store.record_poll("a", PollRecord(etag='"x"'))
        assert since(store).days == [
            PollDay("a", "2026-03-01", 2, 0),
            PollDay("a", "2026-03-02", 1, 0),
        ]
        assert len(since(store).recent) == 4


def test_old_days_are_pruned_and_removed_sources_forgotten(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        store.record_polls([("a", poll(T0, "error")), ("gone", poll(T0, "error"))])
        later = T0 + timedelta(days=HISTORY_DAYS + 1)
        # The first poll of a later day prunes the days no status page shows any more.
        store.record_polls([("a", poll(later, "error"))])
        days = store.db.execute("SELECT source_id, day FROM poll_days").fetchall()
        assert days == [("a", later.date().isoformat())]
        store.prune_history(later, ["a"])
        assert {p.source_id for p in store.status_rows(T0).recent} == {"a"}


def test_new_entries_per_day_are_counted_where_they_are_stored(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    """A source's first copies of articles count (new ones, and ones another source
    brought first); seeing them again does not. Fetch times and outcomes come with each
    poll, 304s and failures included."""
    config = load_config(
        write_config(
            [
                {
                    "id": "a",
                    "name": "A",
                    "url": server.set("/a.xml", rss(ITEMS)),
                    "category": "测试",
                    "share_code": {"param": "infoCode"},  # one article in both
                },
                {
                    "id": "b",
                    "name": "B",
                    "url": server.set("/b.xml", rss(ITEMS)),
                    "category": "测试",
                    "share_code": {"param": "infoCode"},  # one article in both
                },
            ]
        )
    )
    a, b = config.sources
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        assert poll_source(a, store, fetcher, clock=clock).new == 2
        clock.advance(600)
        assert poll_source(a, store, fetcher, clock=clock).result == "not_modified"
        assert poll_source(b, store, fetcher, clock=clock).added_source == 2
        server.set("/a.xml", b"gone", status=500, content_type="text/plain")
        clock.advance(600)
        assert poll_source(a, store, fetcher, clock=clock).result == "error"
        rows = store.status_rows(clock() - timedelta(days=1))
    day = clock().date().isoformat()
    assert rows.days == [PollDay("a", day, 1, 2), PollDay("b", day, 0, 2)]
    recent = [p for p in rows.recent if p.source_id == "a"]
    assert [(p.result, p.http_status) for p in recent] == [
        ("ok", 200),
        ("not_modified", 304),
        ("error", 500),
    ]
    # Each poll's fetch time, kept to the millisecond (a loopback fetch may take less).
    assert all(p.fetch_seconds is not None and p.fetch_seconds >= 0 for p in recent)
    assert {r["id"]: r["entry_count"] for r in rows.sources} == {"a": 2, "b": 2}
    assert all(r["last_fetch_seconds"] > 0 for r in rows.sources)
    assert rows.entries == 2


def test_a_fetch_says_how_long_it_took(server: FeedServer) -> None:
    """The fetcher times each fetch, whichever way it ran and however it ended."""
    slow = server.set("/slow.xml", handler=SlowFeed(rss(ITEMS), hold=0.3))
    missing = server.url("/missing.xml")
    with Fetcher() as fetcher:
        assert fetcher.fetch(slow).seconds >= 0.3
        many = dict(fetcher.fetch_many([(u, FetchRequest(u)) for u in (slow, missing)], 2))
        assert not isinstance(many[slow], FetchError) and many[slow].seconds >= 0.3
        assert isinstance(many[missing], FetchError) and many[missing].seconds > 0
        try:
            fetcher.fetch(missing)
        except FetchError as exc:
            assert exc.seconds > 0
        else:
            raise AssertionError("a 404 is a FetchError")


def test_migration_10_keeps_sources_and_starts_their_history(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    for migration in MIGRATIONS[:9]:
        migration(sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 9")
    conn.execute("INSERT INTO sources (id, last_result, error_count) VALUES ('a', 'error', 3)")
    conn.close()
    with SqliteStore(old) as store:
        assert store.schema_version == len(MIGRATIONS)
        store.record_polls([("a", poll(T0, "error"))])
        rows = since(store)
    assert rows.sources[0]["error_count"] == 1
    assert [p.result for p in rows.recent] == ["error"]


def test_cleanup_prunes_the_history_of_removed_sources(write_config: Any, tmp_path: Path) -> None:
    config = load_config(
        write_config([{"id": "a", "name": "A", "url": "file:///dev/null", "category": "c"}])
    )
    with SqliteStore(config.settings.database) as store:
        store.record_polls([("a", poll(T0, "error")), ("removed", poll(T0, "error"))])
        cleanup(store, config, T0)
        kept = store.db.execute("SELECT DISTINCT source_id FROM poll_days").fetchall()
    assert kept == [("a",)]
