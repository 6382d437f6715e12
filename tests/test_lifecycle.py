"""`aggregator run` as a real process: clean stop on SIGTERM, one daemon per database,
logs on stderr one line per event (text or JSON)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aggregator.errors import StoreError
from aggregator.run.daemon import Daemon
from tests.daemonkit import SlowFeed, free_port, running
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEM = Item("NW202112242224484383", "凝神聚力保畅通 忠诚守护“西大门”", guid="baoji-1")
ROOT = Path(__file__).resolve().parent.parent


def start(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aggregator", *args, "run", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AGGREGATOR_PORT": str(free_port())},
    )


def integrity(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def slow_config(server: FeedServer, write_config: Any, slow: SlowFeed, **settings: Any) -> Path:
    url = server.set("/slow.xml", handler=slow)
    return write_config(
        [{"id": "slow", "name": "慢", "url": url, "category": "测试", "interval": 600}],
        publish_delay=0.05,
        **settings,
    )


def test_sigterm_during_a_slow_poll_lets_it_finish_and_exits_0(
    server: FeedServer, write_config: Any
) -> None:
    slow = SlowFeed(rss([ITEM]))
    path = slow_config(server, write_config, slow)
    process = start(path, "--log-format", "json")
    try:
        assert slow.started.wait(15), "the daemon never polled"
        process.send_signal(signal.SIGTERM)
        # Release the held response a moment after the signal: the poll is in flight.
        threading.Timer(0.3, slow.release.set).start()
        _, stderr = process.communicate(timeout=20)
    finally:
        slow.release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    database = path.parent.parent / "data" / "test.db"
    assert integrity(database) == "ok"
    with sqlite3.connect(database) as conn:
        # The poll that was running when the signal came was allowed to finish and store.
        assert conn.execute("SELECT last_result FROM sources WHERE id='slow'").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (1,)
    # --log-format json: every stderr line is one JSON object.
    records = [json.loads(line) for line in stderr.splitlines()]
    messages = [r["message"] for r in records]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(m.startswith("source slow: 1 new") for m in messages)
    assert any("signal SIGTERM: stopping" in m for m in messages)
    assert messages[-1] == "stopped"


def test_a_poll_stuck_past_the_stop_bound_does_not_hold_the_exit(
    server: FeedServer, write_config: Any
) -> None:
    slow = SlowFeed(rss([ITEM]), hold=30)
    path = slow_config(server, write_config, slow, stop_timeout=0.5)
    process = start(path)
    try:
        assert slow.started.wait(15), "the daemon never polled"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)  # far less than the 30 s the server holds
    finally:
        slow.release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "polls still running after 0.5s; stopping anyway" in stderr
    assert integrity(path.parent.parent / "data" / "test.db") == "ok"
    # Text logs: one line per event, each naming its logger; the source's line names it.
    lines = stderr.strip().splitlines()
    assert all(" aggregator." in line or " apscheduler" in line for line in lines), lines


def test_a_second_daemon_on_the_same_database_is_refused(
    server: FeedServer, write_config: Any
) -> None:
    url = server.set("/a.xml", rss([ITEM]))
    path = write_config([{"id": "a", "name": "A", "url": url, "category": "测试"}])
    with running(path) as first:
        second = Daemon(path, port=0)
        with pytest.raises(StoreError, match="already running"):
            second.start()
        process = start(path)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 3
        assert f"another aggregator daemon (pid {os.getpid()}) is already running" in stderr
        assert first.scheduler and first.scheduler.running
    # Once the first has stopped, a new one starts.
    with running(path) as third:
        assert third.scheduler and third.scheduler.running
