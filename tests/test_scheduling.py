"""Scheduling: pure timing decisions with an injected clock, and the real APScheduler.

APScheduler 3 reads the wall clock itself, so the decisions (first poll,
jitter, backoff) are checked through the pure functions and through a real
scheduler started paused (jobs placed, nothing run) with an injected clock;
behaviour that needs jobs to actually run (one poll at a time, moving a job
to the decided time) uses a running scheduler with short intervals.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aggregator.config.loader import Source
from aggregator.run.pacing import (
    MAX_START_WINDOW,
    PollFacts,
    delay_after,
    first_poll_at,
    jitter,
    start_window,
)
from aggregator.run.scheduler import PollScheduler
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.daemonkit import SlowFeed, running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEM = Item("NW202112242224484383", "凝神聚力保畅通 忠诚守护“西大门”", guid="baoji-1")


def source(source_id: str, interval: float = 1800.0) -> Source:
    return Source(source_id, source_id, f"http://127.0.0.1:9/{source_id}.xml", "测试", (), interval)


@pytest.fixture
def paused() -> Iterator[Any]:
    """A real PollScheduler, started paused, with an injected clock and seeded randomness."""
    made: list[PollScheduler] = []

    def make(clock: Clock, seed: int = 7) -> PollScheduler:
        scheduler = PollScheduler(
            lambda source_id: None, workers=2, clock=clock, rand=random.Random(seed).random
        )
        scheduler.start(paused=True)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.shutdown(wait=False)


# --- pure decisions ------------------------------------------------------------------


def test_first_poll_keeps_a_stored_future_time(clock: Clock) -> None:
    later = clock.now + timedelta(hours=3)
    assert first_poll_at(clock.now, later, 1800, 0.99, 10) == later


def test_due_sources_are_spread_over_a_short_window(clock: Clock) -> None:
    rng = random.Random(1)
    times = [first_poll_at(clock.now, None, 1800, rng.random(), 40) for _ in range(40)]
    window = timedelta(seconds=start_window(40, 1800))
    assert window == timedelta(seconds=20)
    assert all(clock.now <= t <= clock.now + window for t in times)
    assert len(set(times)) == 40
    # A stale stored time (the daemon was down) counts as due, not as "poll in the past".
    stale = clock.now - timedelta(days=2)
    assert clock.now <= first_poll_at(clock.now, stale, 1800, 0.5, 1) <= clock.now + window


def test_start_window_is_bounded() -> None:
    assert start_window(1, 1800) == 0.5
    assert start_window(10_000, 86400) == MAX_START_WINDOW
    assert start_window(100, 60) == 6.0  # never beyond a tenth of the interval


def test_jitter_and_backoff_bounds() -> None:
    assert jitter(1800, 0.0) == 0
    assert jitter(1800, 0.999) < 180
    assert jitter(86400, 0.999) < 300  # at most five minutes
    ok = PollFacts(1800, succeeded=True)
    assert 1800 <= delay_after(ok, 0.5) < 1800 + 180
    second_failure = PollFacts(1800, succeeded=False, error_count=2)
    assert 0.75 * 3600 <= delay_after(second_failure, 0.3) <= 3600
    told = PollFacts(1800, succeeded=False, error_count=1, retry_after=7200)
    assert delay_after(told, 0.9) == 7200


# --- a real scheduler, paused, on an injected clock ------------------------------------


def test_restart_keeps_stored_next_poll_and_spreads_due_sources(paused: Any, clock: Clock) -> None:
    scheduler = paused(clock)
    stored = {"later": clock.now + timedelta(minutes=47)}
    sources = [source("later"), *(source(f"due-{n}") for n in range(8))]
    scheduler.sync(sources, stored)
    assert scheduler.job_ids() == {s.id for s in sources}
    assert scheduler.next_run("later") == stored["later"]
    window = timedelta(seconds=start_window(8, 1800))
    firsts = [scheduler.next_run(f"due-{n}") for n in range(8)]
    assert all(t is not None and clock.now <= t <= clock.now + window for t in firsts)
    assert len(set(firsts)) == 8  # not fired together


def test_interval_and_jitter_of_each_job(paused: Any, clock: Clock) -> None:
    scheduler = paused(clock)
    scheduler.sync([source("a", 600), source("b", 7200)], {})
    for source_id, interval in (("a", 600), ("b", 7200)):
        trigger = scheduler.trigger_of(source_id)
        assert trigger.interval == timedelta(seconds=interval)
        assert trigger.jitter == jitter(interval, 1.0)
        # APScheduler's own next-fire computation, fed the injected time.
        fires = [trigger.get_next_fire_time(clock.now, clock.now) for _ in range(50)]
        low = clock.now + timedelta(seconds=interval)
        high = low + timedelta(seconds=jitter(interval, 1.0))
        assert all(low <= f <= high for f in fires)
        assert len(set(fires)) > 1


def test_sync_adds_removes_and_retimes_without_losing_the_decided_time(
    paused: Any, clock: Clock
) -> None:
    scheduler = paused(clock)
    decided = clock.now + timedelta(hours=5)  # e.g. a Retry-After
    scheduler.sync([source("a", 600), source("b")], {"a": decided})
    scheduler.sync([source("a", 300), source("c")], {"a": decided})
    assert scheduler.job_ids() == {"a", "c"}
    assert scheduler.trigger_of("a").interval == timedelta(seconds=300)
    assert scheduler.next_run("a") == decided
    scheduler.add_housekeeping("retention", lambda: None, 86400, clock.now)
    scheduler.sync([source("c")], {})
    assert scheduler.job_ids() == {"c"}
    assert scheduler.scheduler.get_job("@retention") is not None  # not a source: untouched


# --- a real scheduler, running ----------------------------------------------------------


def test_job_moves_to_the_time_the_poll_decided() -> None:
    polls: list[str] = []
    decided = datetime.now(UTC) + timedelta(hours=1)
    done = threading.Event()

    def run_poll(source_id: str) -> datetime:
        polls.append(source_id)
        done.set()
        return decided

    scheduler = PollScheduler(run_poll, workers=2)
    scheduler.start()
    try:
        scheduler.sync([source("fast", 0.05)], {})
        assert done.wait(5)
        wait_for(lambda: scheduler.next_run("fast") == decided, what="job moved")
        # The 50 ms interval trigger no longer fires: the decided time rules.
        threading.Event().wait(0.3)
        assert polls == ["fast"]
    finally:
        scheduler.shutdown()


def test_a_slow_source_is_never_polled_twice_at_once(server: FeedServer, write_config: Any) -> None:
    slow_a, slow_b = SlowFeed(rss([ITEM])), SlowFeed(rss([ITEM]))
    path = write_config(
        [
            {
                "id": source_id,
                "name": source_id,
                "url": server.set(path, handler=feed),
                "category": "c",
                "share_code": {"param": "infoCode"},  # one article, carried by both
            }
            for source_id, path, feed in (("slow-a", "/a", slow_a), ("slow-b", "/b", slow_b))
        ],
        workers=4,
        default_interval=0.05,
        publish_delay=0.05,
    )
    with running(path) as daemon:
        # Both are held at once: the pool polls different sources concurrently...
        wait_for(lambda: slow_a.active and slow_b.active, what="both polls in flight")
        # ...while each 50 ms trigger fires again and again into a running poll.
        threading.Event().wait(0.4)
        assert (slow_a.count, slow_b.count) == (1, 1)
        slow_a.release.set()
        slow_b.release.set()
        wait_for(lambda: slow_a.count >= 4 and slow_b.count >= 4, what="repeated polls")
        assert daemon.store is not None
        assert daemon.store.entry_count() == 1
    assert (slow_a.max_active, slow_b.max_active) == (1, 1)


def test_next_poll_time_survives_a_restart(server: FeedServer, write_config: Any) -> None:
    url = server.set(
        "/busy.xml", b"busy", status=503, content_type="text/plain", headers={"Retry-After": "3600"}
    )
    path = write_config(
        [{"id": "busy", "name": "忙", "url": url, "category": "c", "interval": 60}],
        publish_delay=0.05,
    )
    with running(path) as first:
        assert first.scheduler is not None and first.store is not None
        wait_for(lambda: first.store.source_state("busy").error_count == 1, what="first poll")
        stored = first.store.source_state("busy").next_poll_at
        assert stored is not None
        assert stored >= datetime.now(UTC) + timedelta(seconds=3500)
        wait_for(lambda: first.scheduler.next_run("busy") == stored, what="job moved")
    with running(path) as second:
        assert second.scheduler is not None
        assert second.scheduler.next_run("busy") == stored  # the Retry-After is remembered
    assert server.hits("/busy.xml") == 1
    with SqliteStore(path.parent.parent / "data" / "test.db") as store:
        assert store.source_state("busy").next_poll_at == stored
