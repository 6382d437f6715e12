"""Live config reload of a running daemon, and batched publishing after polls."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import RESTART_SETTINGS
from aggregator.run.daemon import PublishQueue
from aggregator.store.records import FeedKey
from tests.daemonkit import rewrite, running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

A1 = Item("NW202112240805120001", "西安地铁新线路开通试运营", guid="a-1")
B1 = Item("NW202112241000000004", "西宝高速部分路段施工 请绕行", guid="b-1")
B2 = Item("NW202112242224484383", "凝神聚力保畅通 忠诚守护“西大门”", guid="b-2")
FAST = {"publish_delay": 0.05}


def src(source_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": source_id, "name": source_id.upper(), "url": url, "category": "测试", **extra}


def test_add_change_remove_a_source_in_a_running_daemon(
    server: FeedServer, write_config: Any
) -> None:
    a = server.set("/a.xml", rss([A1]))
    b = server.set("/b.xml", rss([B1]))
    path = write_config([src("a", a, interval=60)], **FAST)
    with running(path) as daemon:
        assert daemon.scheduler and daemon.store
        wait_for(lambda: server.hits("/a.xml") == 1, what="first poll of a")

        rewrite(path, [src("a", a, interval=60), src("b", b, interval=60)], **FAST)
        wait_for(lambda: server.hits("/b.xml") == 1, what="new source polled")
        assert daemon.scheduler.job_ids() == {"a", "b"}
        out = daemon.config.settings.output_dir
        wait_for(lambda: (out / "source/b.xml").exists(), what="b published")

        # Change: a new interval and new tags apply from the next poll; the decided
        # next poll time stays.
        before = daemon.scheduler.next_run("b")
        rewrite(path, [src("a", a, interval=60), src("b", b, interval=120, tags=["新"])], **FAST)
        # The config is swapped before the jobs are reconciled: wait for both.
        wait_for(lambda: daemon.config.source("b").interval == 120, what="reload")
        wait_for(
            lambda: daemon.scheduler.trigger_of("b").interval.total_seconds() == 120,
            what="job retimed",
        )
        assert daemon.scheduler.trigger_of("b").interval == timedelta(seconds=120)
        assert daemon.scheduler.next_run("b") == before
        assert daemon.config.source("b").tags == ("新",)

        # Remove: the job stops, the stored entries and their feed stay.
        rewrite(path, [src("b", b, interval=120)], **FAST)
        wait_for(lambda: daemon.scheduler.job_ids() == {"b"}, what="a removed")
        rows = {r["id"]: r for r in daemon.store.source_rows()}
        assert rows["a"]["entry_count"] == 1
        assert A1.title in (out / "source/a.xml").read_text(encoding="utf-8")
    assert server.hits("/a.xml") == 1


def test_a_broken_edit_keeps_the_last_good_config(
    server: FeedServer, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = server.set("/a.xml", rss([A1]))
    path = write_config([src("a", a, interval=60)], **FAST)
    with running(path) as daemon:
        good = daemon.config
        caplog.set_level(logging.INFO, logger="aggregator")
        path.write_text(
            path.read_text(encoding="utf-8") + '\n[[sources]]\nid = "b"\ninterval = "soon"\n',
            encoding="utf-8",
        )
        wait_for(lambda: "config reload rejected" in caplog.text, what="rejection logged")
        assert daemon.config is good
        assert daemon.scheduler and daemon.scheduler.job_ids() == {"a"}
        line = next(r for r in caplog.records if "reload rejected" in r.getMessage())
        assert line.levelno == logging.ERROR
        message = line.getMessage()
        assert "\n" not in message  # one line per event
        assert "sources[1].interval" in message and "sources.toml:" in message
        assert "keeping the last good config" in message
        # Fixing the file is picked up again.
        rewrite(path, [src("a", a, interval=90)], **FAST)
        wait_for(lambda: daemon.config.source("a").interval == 90, what="fixed config")


def test_a_config_file_rewritten_in_place_is_never_read_half_written(
    server: FeedServer, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An editor or a script that truncates the file, then writes it: the empty file in
    between is a valid config with no sources. The daemon must never take it."""
    a = server.set("/a.xml", rss([A1]))
    path = write_config([src("a", a, interval=60)], **FAST)
    with running(path, watch_interval=0.1) as daemon:
        caplog.set_level(logging.INFO, logger="aggregator")
        text = path.read_text(encoding="utf-8")
        deadline = time.monotonic() + 2.0  # some 20 looks of the watcher
        while time.monotonic() < deadline:
            with open(path, "w", encoding="utf-8") as handle:  # truncated: empty for 5 ms
                handle.flush()
                time.sleep(0.005)
                handle.write(text)
            time.sleep(0.02)
        rewrite(path, [src("a", a, interval=90)], **FAST)
        wait_for(lambda: daemon.config.source("a").interval == 90, what="the last edit")
        assert daemon.scheduler and daemon.scheduler.job_ids() == {"a"}
    assert "config reloaded: 0 sources" not in caplog.text


def test_sighup_requests_a_reload(server: FeedServer, write_config: Any) -> None:
    a = server.set("/a.xml", rss([A1]))
    path = write_config([src("a", a, interval=60)], **FAST)
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: daemon.request_reload())
    try:
        with running(path, watch_interval=0.05) as daemon:
            # Same size, same mtime: only the signal can tell the daemon.
            stat = path.stat()
            text = path.read_text(encoding="utf-8").replace("interval = 60", "interval = 70")
            path.write_text(text, encoding="utf-8")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            daemon._config_stamp = daemon._stamp()  # as if the watcher had already looked
            os.kill(os.getpid(), signal.SIGHUP)
            wait_for(lambda: daemon.config.source("a").interval == 70, what="SIGHUP reload")
    finally:
        signal.signal(signal.SIGHUP, previous)


# --- publishing ------------------------------------------------------------------------


def test_publish_queue_batches_a_burst_into_one_publish() -> None:
    calls: list[set[FeedKey]] = []
    queue = PublishQueue(lambda keys, give_up: calls.append(keys), delay=60)
    queue.start()
    queue.add({("all", ""), ("source", "a")})
    queue.add({("source", "b")})
    queue.add({("all", ""), ("source", "a")})
    queue.add(set())
    queue.stop()  # flushes what is pending at once
    assert calls == [{("all", ""), ("source", "a"), ("source", "b")}]


def test_publish_queue_keeps_keys_when_publishing_fails() -> None:
    calls: list[set[FeedKey]] = []

    def flaky(keys: set[FeedKey], give_up: Callable[[], bool]) -> None:
        calls.append(keys)
        if len(calls) == 1:
            raise OSError("disk full")

    queue = PublishQueue(flaky, delay=60)
    queue.add({("source", "a")})
    queue.flush()
    queue.add({("source", "b")})
    queue.flush()
    assert calls == [{("source", "a")}, {("source", "a"), ("source", "b")}]


def test_a_stopping_queue_publishes_for_a_bounded_time() -> None:
    """stop() tells the publish under way to give up once its drain time is over: a
    backlog of thousands of feeds does not hold the daemon's stop for minutes."""
    started, gave_up = threading.Event(), threading.Event()

    def slow(keys: set[FeedKey], give_up: Callable[[], bool]) -> None:
        started.set()
        while not give_up():  # one feed after another, as Publisher.publish does
            time.sleep(0.01)
        gave_up.set()

    queue = PublishQueue(slow, delay=0, drain=0.2)
    queue.start()
    queue.add({("source", "a")})
    assert started.wait(10)
    queue.stop()
    assert gave_up.is_set()


def test_only_feeds_whose_entries_changed_are_regenerated(
    server: FeedServer, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = server.set("/a.xml", rss([A1]))
    b = server.set("/b.xml", rss([B1]))
    path = write_config(
        [
            src("a", a, category="甲", tags=["甲标签"], interval=0.3),
            src("b", b, category="乙", tags=["乙标签"], interval=0.3),
        ],
        **FAST,
    )
    caplog.set_level(logging.INFO, logger="aggregator.daemon")
    with running(path) as daemon:
        assert daemon.store
        wait_for(lambda: daemon.store.entry_count() == 2, what="first polls")
        wait_for(lambda: "source/b" in caplog.text and "source/a" in caplog.text, what="publish")
        out = daemon.config.settings.output_dir
        a_feed = (out / "source/a.xml").stat().st_mtime_ns
        caplog.clear()
        server.set("/b.xml", rss([B2, B1]))
        wait_for(lambda: daemon.store.entry_count() == 3, what="b's new entry")
        wait_for(lambda: "published" in caplog.text, what="publish after b changed")
        lines = [r.getMessage() for r in caplog.records if "published" in r.getMessage()]
        assert len(lines) == 1
        assert lines[0].endswith("changed feeds: all, category/乙, source/b, tag/乙标签")
        assert (out / "source/a.xml").stat().st_mtime_ns == a_feed
        assert B2.title in (out / "source/b.xml").read_text(encoding="utf-8")


def test_settings_bound_at_start_wait_for_a_restart(
    server: FeedServer, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = server.set("/a.xml", rss([A1]))
    path = write_config([src("a", a, interval=60)], **FAST)
    with running(path) as daemon:
        caplog.set_level(logging.INFO, logger="aggregator")
        database = daemon.config.settings.database
        rewrite(path, [src("a", a, interval=60)], publish_delay=0.2, port=9999, database="x.db")
        wait_for(lambda: daemon.config.settings.publish_delay == 0.2, what="reload")
        assert daemon.queue and daemon.queue.delay == 0.2  # applies live
        assert daemon.config.settings.database == database  # needs a restart
        assert daemon.config.settings.port == 8080
        assert "changing port needs a restart; keeping 8080 until then" in caplog.text
        assert "changing database needs a restart" in caplog.text


RESTART_CHANGES = {
    "database": "other/x.db",
    "output_dir": "other-feeds",
    "host": "0.0.0.0",
    "port": 9999,
    "workers": 7,
    "user_agent": "another-agent/1.0",
    "per_host_limit": 9,
}


def test_every_setting_that_needs_a_restart_says_so(
    server: FeedServer, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Each setting bound at start logs that it waits for a restart; the others apply at
    once, in the parts that hold them (the fetcher's limits, the stop bound)."""
    assert set(RESTART_CHANGES) == set(RESTART_SETTINGS)
    a = server.set("/a.xml", rss([A1]))
    path = write_config([src("a", a, interval=60)], **FAST)
    with running(path, stop_timeout=None) as daemon:
        caplog.set_level(logging.INFO, logger="aggregator")
        before = daemon.config.settings
        live = {"stop_timeout": 3, "connect_timeout": 4, "max_redirects": 2, "publish_delay": 0.3}
        rewrite(path, [src("a", a, interval=60)], **RESTART_CHANGES, **live)
        wait_for(lambda: daemon.config.settings.publish_delay == 0.3, what="reload")
        for name in RESTART_SETTINGS:
            assert getattr(daemon.config.settings, name) == getattr(before, name)
            old = getattr(before, name)
            assert f"changing {name} needs a restart; keeping {old} until then" in caplog.text
        assert daemon.stop_timeout == 3
        assert daemon.fetcher is not None
        assert (daemon.fetcher.limits.connect_timeout, daemon.fetcher.limits.max_redirects) == (
            4,
            2,
        )


def test_the_service_guide_lists_every_setting_that_needs_a_restart() -> None:
    guide = (Path(__file__).parents[1] / "docs" / "service.md").read_text(encoding="utf-8")
    bullet = re.search(r"- \*\*Settings bound at start\.\*\*(.*?)(?:\n- |\n\n)", guide, re.S)
    assert bullet, "docs/service.md has a 'Settings bound at start' bullet"
    listed = re.findall(r"`(\w+)`", bullet.group(1).split(":", 1)[1].split(".")[0])
    assert sorted(listed) == sorted(RESTART_SETTINGS)
