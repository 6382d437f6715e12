"""Retention: the pure decision, the cleanup with tombstones, and the daemon's daily job."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import sqlite_utils
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.run.poll import poll_source
from aggregator.store.records import Candidate
from aggregator.store.retention import Policy, cleanup, policy_for, to_drop
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from tests.atomcheck import assert_valid
from tests.conftest import Clock
from tests.daemonkit import running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

DAY = 86400.0


def candidate(code: str, clock: Clock, days_old: float, *sources: str) -> Candidate:
    return Candidate(code, clock.now - timedelta(days=days_old), sources)


# --- the pure decision -------------------------------------------------------------------


def test_age_limit(clock: Clock) -> None:
    entries = [candidate("new", clock, 1, "a"), candidate("old", clock, 40, "a")]
    assert to_drop(entries, {"a": Policy(max_age=30 * DAY)}, Policy(), clock.now) == {"old"}
    assert to_drop(entries, {"a": Policy()}, Policy(), clock.now) == set()


def test_count_limit_keeps_the_newest_per_source(clock: Clock) -> None:
    entries = [candidate(f"e{n}", clock, n, "a") for n in range(5)]
    entries += [candidate(f"f{n}", clock, n, "b") for n in range(3)]
    policies = {"a": Policy(max_entries=2), "b": Policy(max_entries=10)}
    assert to_drop(entries, policies, Policy(), clock.now) == {"e2", "e3", "e4"}


def test_both_limits_together(clock: Clock) -> None:
    entries = [candidate(f"e{n}", clock, n * 10, "a") for n in range(5)]  # 0, 10, .. 40 days
    policy = Policy(max_age=25 * DAY, max_entries=4)
    assert to_drop(entries, {"a": policy}, Policy(), clock.now) == {"e3", "e4"}


def test_an_entry_stays_while_any_source_keeps_it(clock: Clock) -> None:
    shared = candidate("shared", clock, 50, "a", "b")
    entries = [shared, candidate("a-only", clock, 50, "a")]
    policies = {"a": Policy(max_age=30 * DAY), "b": Policy()}
    assert to_drop(entries, policies, Policy(), clock.now) == {"a-only"}


def test_removed_sources_and_orphans_follow_the_default(clock: Clock) -> None:
    entries = [candidate("gone", clock, 50, "removed"), candidate("orphan", clock, 50)]
    assert to_drop(entries, {}, Policy(max_age=30 * DAY), clock.now) == {"gone", "orphan"}
    assert to_drop(entries, {}, Policy(), clock.now) == set()


def test_source_limits_override_the_global_ones(write_config: Any) -> None:
    config = load_config(
        write_config(
            [
                {"id": "a", "name": "A", "url": "http://x.example/a", "category": "c"},
                {
                    "id": "b",
                    "name": "B",
                    "url": "http://x.example/b",
                    "category": "c",
                    "retain_entries": 5,
                },
            ],
            retain_for="90d",
            retain_entries=100,
        )
    )
    a, b = config.sources
    assert policy_for(a, config.settings) == Policy(90 * DAY, 100)
    assert policy_for(b, config.settings) == Policy(90 * DAY, 5)


# --- on a real store ---------------------------------------------------------------------

ITEMS = [
    Item(f"NW2021122400000000{n:02d}", f"第{n}条新闻", date=f"{24 - n} Dec 2021 03:00:26 +0800")
    for n in range(5)
]


def test_removed_entries_never_come_back(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    url = server.set("/a.xml", rss(ITEMS), validators=False)
    path = write_config(
        [
            {
                "id": "a",
                "name": "A",
                "url": url,
                "category": "测试",
                "share_code": {"param": "infoCode"},
            }
        ],
        retain_entries=2,
    )
    config = load_config(path)
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        assert poll_source(config.sources[0], store, fetcher, clock=clock).new == 5

        dry = cleanup(store, config, clock.now, dry_run=True)
        assert dry.removed == sorted(i.code for i in ITEMS[2:])
        assert store.entry_count() == 5

        result = cleanup(store, config, clock.now)
        assert result.removed == sorted(i.code for i in ITEMS[2:])
        assert ("source", "a") in result.changed_feeds
        assert {a.code for a in store.articles(("all", ""), 10)} == {i.code for i in ITEMS[:2]}

        # The feed still lists all five, with a changed body: nothing removed returns.
        newer = Item("NW202112250000000099", "新的一条", date="25 Dec 2021 08:00:00 +0800")
        server.set("/a.xml", rss([*ITEMS, newer]))
        clock.advance(3600)
        outcome = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert (outcome.result, outcome.new) == ("ok", 1)
        assert store.entry_count() == 3
        assert cleanup(store, config, clock.now).removed == [ITEMS[1].code]
    with sqlite3.connect(config.settings.database) as conn:
        reasons = conn.execute("SELECT reason, count(*) FROM tombstones GROUP BY reason")
        assert reasons.fetchall() == [("retention", 4)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT count(*) FROM entry_sources").fetchone() == (2,)
        # Never published, so still queued: what was removed left nothing in the queue.
        queued = conn.execute("SELECT DISTINCT code FROM feed_pending").fetchall()
        assert sorted(code for (code,) in queued) == sorted(i.code for i in [ITEMS[0], newer])


def test_an_old_database_gains_the_tombstone_table(tmp_path: Any) -> None:
    database = tmp_path / "old.db"
    with sqlite3.connect(database, isolation_level=None) as conn:
        for migration in MIGRATIONS[:2]:  # as it was before migration 3
            migration(sqlite_utils.Database(conn))
        conn.execute("PRAGMA user_version = 2")
    with SqliteStore(database) as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert "tombstones" in store.db.table_names()
        assert "raw_digest" in store.db["entry_sources"].columns_dict


def test_daemon_runs_retention_daily_and_republishes(server: FeedServer, write_config: Any) -> None:
    url = server.set("/a.xml", rss(ITEMS))
    path = write_config(
        [
            {
                "id": "a",
                "name": "A",
                "url": url,
                "category": "测试",
                "share_code": {"param": "infoCode"},
                "interval": 3600,
            }
        ],
        retain_entries=3,
        publish_delay=0.05,
    )
    with running(path) as daemon:
        assert daemon.scheduler and daemon.store
        job = daemon.scheduler.scheduler.get_job("@retention")
        assert job.trigger.interval == timedelta(days=1)
        feed = daemon.config.settings.output_dir / "source/a.xml"
        wait_for(
            lambda: feed.exists() and ITEMS[4].title in feed.read_text(encoding="utf-8"),
            what="first poll published",
        )
        daemon.cleanup()  # what the daily job runs
        assert daemon.store.entry_count() == 3
        wait_for(lambda: ITEMS[4].title not in feed.read_text(encoding="utf-8"), what="republish")
        assert ITEMS[0].title in feed.read_text(encoding="utf-8")


def test_cleanup_command(server: FeedServer, write_config: Any, clock: Clock) -> None:
    url = server.set("/a.xml", rss(ITEMS))
    path = write_config(
        [
            {
                "id": "a",
                "name": "A",
                "url": url,
                "category": "c",
                "share_code": {"param": "infoCode"},
            }
        ],
        retain_for="30d",
    )
    config = load_config(path)
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        poll_source(config.sources[0], store, fetcher, clock=clock)
    runner = CliRunner()
    assert runner.invoke(main, ["publish", "--config", str(path)]).exit_code == 0
    feed = config.settings.output_dir / "source/a.xml"
    assert feed.read_text(encoding="utf-8").count("<entry>") == 5
    dry = runner.invoke(main, ["cleanup", "--config", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "would remove 5 entries" in dry.output  # all from 2021
    done = runner.invoke(main, ["cleanup", "--config", str(path)])
    assert done.exit_code == 0 and "removed 5 entries" in done.output
    # The feed that lost every entry is emptied, not left listing removed entries.
    emptied = feed.read_bytes()
    assert b"<entry>" not in emptied
    assert_valid(emptied)
