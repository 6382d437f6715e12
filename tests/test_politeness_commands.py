"""Politeness holds for every command: `poll --all` means "due or not", never "impolite".

Real feeds on 127.0.0.1, the commands as real processes: a source that answered 410 Gone
and one inside its Retry-After window are not fetched by `poll --all`, by `poll ID`, by
`sources check` or by the daemon; `--force` overrides Retry-After only; `sources enable`
lifts a 410 stop. And the next poll after a failure counts from when the failure ended.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from aggregator.run.poll import poll_source
from aggregator.store.records import PollRecord, from_iso
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock, run_aggregator
from tests.daemonkit import running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.hostile import Connection, HostileServer, Request

FEED = rss([Item("NW202112240300260001", "凝神聚力保畅通")])


def aggregator(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_aggregator(*args, "--config", str(path))


def source(source_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": source_id, "name": source_id, "url": url, "category": "c", **extra}


def stored(path: Path) -> dict[str, dict[str, Any]]:
    listed = json.loads(aggregator(path, "status", "--json").stdout)
    return {row["id"]: row for row in listed["sources"]}


@pytest.fixture
def scene(server: FeedServer, write_config: Any) -> Iterator[tuple[FeedServer, Path]]:
    """Three sources polled once: "ok", "gone" (410) and "busy" (429, Retry-After 1 h)."""
    server.set("/ok.xml", FEED)
    server.set("/gone.xml", b"gone", status=410, content_type="text/plain")
    busy = {"Retry-After": "3600"}
    server.set("/busy.xml", b"later", status=429, content_type="text/plain", headers=busy)
    path = write_config(
        [source(name, server.url(f"/{name}.xml")) for name in ("ok", "gone", "busy")]
    )
    first = aggregator(path, "poll", "--all")
    assert first.returncode == 1, first.stderr  # two sources failed
    yield server, path


def hits(server: FeedServer) -> dict[str, int]:
    return {name: server.hits(f"/{name}.xml") for name in ("ok", "gone", "busy")}


def test_poll_all_skips_gone_and_retry_after_and_says_why(
    scene: tuple[FeedServer, Path],
) -> None:
    server, path = scene
    state = stored(path)
    assert state["gone"]["disabled_reason"].startswith("410 Gone")
    assert state["busy"]["last_http_status"] == 429
    before = hits(server)
    again = aggregator(path, "poll", "--all")
    assert again.returncode == 0, again.stdout + again.stderr
    assert hits(server) == {**before, "ok": before["ok"] + 1}  # due or not: only "ok"
    assert "gone: skipped: stopped (410 Gone at" in again.stdout
    assert "aggregator sources enable gone" in again.stdout
    assert "busy: skipped: the server asked to wait until" in again.stdout
    assert "--force" in again.stdout

    forced = aggregator(path, "poll", "--all", "--force")
    assert forced.returncode == 1  # busy answered 429 again
    assert hits(server)["busy"] == before["busy"] + 1
    assert hits(server)["gone"] == before["gone"]  # --force never overrides 410


def test_named_sources_held_back_are_refused_with_the_reason(
    scene: tuple[FeedServer, Path],
) -> None:
    server, path = scene
    before = hits(server)
    for name, reason in (("gone", "stopped (410 Gone"), ("busy", "Retry-After")):
        refused = aggregator(path, "poll", name)
        assert refused.returncode == 1
        assert reason in refused.stderr
    assert aggregator(path, "poll", "gone", "--force").returncode == 1
    assert hits(server) == before
    assert "--force goes with" in aggregator(path, "poll", "--force").stderr


def test_sources_check_is_polite_too(scene: tuple[FeedServer, Path]) -> None:
    server, path = scene
    before = hits(server)
    checked = aggregator(path, "sources", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr  # unasked: no failure
    assert "gone: skipped" in checked.stdout and "busy: skipped" in checked.stdout
    assert hits(server) == {**before, "ok": before["ok"] + 1}
    assert aggregator(path, "sources", "check", "busy").returncode == 1
    assert hits(server)["busy"] == before["busy"]
    forced = aggregator(path, "sources", "check", "busy", "--force", "--json")
    assert json.loads(forced.stdout)[0]["error"].startswith("HTTP 429")
    assert hits(server)["busy"] == before["busy"] + 1


def test_sources_enable_lifts_a_410_stop(scene: tuple[FeedServer, Path]) -> None:
    server, path = scene
    server.set("/gone.xml", FEED)  # back again
    enabled = aggregator(path, "sources", "enable", "gone")
    assert enabled.returncode == 0, enabled.stderr
    assert "lifted the 410 Gone stop of 'gone'" in enabled.stdout
    assert stored(path)["gone"]["disabled_reason"] is None
    polled = aggregator(path, "poll")  # due at once
    assert polled.returncode == 0 and "gone: " in polled.stdout
    assert stored(path)["gone"]["last_result"] == "ok"


def test_the_daemon_keeps_a_retry_after_window(server: FeedServer, write_config: Any) -> None:
    """Even when the schedule says due (here: `sources enable` made it due), the daemon
    does not fetch inside the window a server asked for."""
    busy = {"Retry-After": "3600"}
    server.set("/busy.xml", b"later", status=429, content_type="text/plain", headers=busy)
    server.set("/ok.xml", FEED)
    path = write_config(
        [
            source("busy", server.url("/busy.xml"), interval="1s"),
            source("ok", server.url("/ok.xml"), interval="1s"),
        ]
    )
    assert aggregator(path, "poll", "--all").returncode == 1
    config = load_config(path)
    with SqliteStore(config.settings.database) as store:
        store.record_poll("busy", PollRecord(next_poll_at=None))  # due by the schedule
    assert server.hits("/busy.xml") == 1
    with running(path):
        wait_for(lambda: server.hits("/ok.xml") >= 3, timeout=20, what="ok polled thrice")
    assert server.hits("/busy.xml") == 1


def stall_then_fail(clock: Clock, took: float) -> Any:
    """A server that keeps the client waiting (the test's clock moves `took` seconds
    meanwhile) and never answers: the fetch fails on its deadline."""

    def behave(conn: Connection, request: Request) -> None:
        clock.advance(took)
        conn.hold(10)

    return behave


def test_a_failure_counts_the_next_poll_from_when_it_ended(write_config: Any) -> None:
    """A 5 s source that timed out after 30 s is not due again at once (injected clock)."""
    clock = Clock()
    with HostileServer(lifetime=30) as hostile:
        hostile.routes["/slow.xml"] = stall_then_fail(clock, 30)
        path = write_config([source("slow", hostile.url("/slow.xml"), interval="5s")])
        config = load_config(path)
        limits = Limits(connect_timeout=2.0, read_timeout=0.5, deadline=1.0)
        with SqliteStore(config.settings.database) as store, Fetcher(limits) as fetcher:
            started = clock()
            outcome = poll_source(config.sources[0], store, fetcher, clock=clock)
            row = {r["id"]: r for r in store.source_rows()}["slow"]
    assert outcome.result == "error"
    ended = started + timedelta(seconds=30)
    assert outcome.next_poll is not None
    assert outcome.next_poll >= ended + timedelta(seconds=0.75 * 5)
    assert from_iso(row["last_poll_at"]) == started
    assert from_iso(row["last_error_at"]) == ended


def test_a_plain_poll_right_after_a_slow_failure_does_not_poll_it_again(
    write_config: Any,
) -> None:
    """Real processes, real time: a source polled every 10 s whose fetch fails after its
    12 s deadline was due again at once when the next poll counted from the start. Counted
    from the end, it is due 7.5 s or more after the failure: room for a loaded machine to
    start the second command."""
    with HostileServer(lifetime=90) as hostile:
        hostile.routes["/slow.xml"] = lambda conn, request: conn.hold(60)
        path = write_config(
            [source("slow", hostile.url("/slow.xml"), interval="10s")],
            fetch_deadline="12s",
            read_timeout="30s",
        )
        first = aggregator(path, "poll")
        assert first.returncode == 1 and "deadline" in first.stdout
        second = aggregator(path, "poll")
        assert "no source is due" in second.stdout, second.stdout
        assert hostile.hits("/slow.xml") == 1
    with SqliteStore(load_config(path).settings.database) as store:
        row = {r["id"]: r for r in store.source_rows()}["slow"]
    polled, failed = from_iso(row["last_poll_at"]), from_iso(row["last_error_at"])
    next_poll = from_iso(row["next_poll_at"])
    assert polled and failed and next_poll
    assert (failed - polled).total_seconds() >= 11.5  # the deadline
    assert next_poll >= failed + timedelta(seconds=0.75 * 10)
