"""Each source's chain of poll jobs in a cluster (aggregator.run.cluster), one node in
this process on a real PostgreSQL (tests/pg.py) with procrastinate's real tables: a
node takes no poll before it knows its sources, and a chain lost to a failure is
queued again. The polls themselves are the daemon's (tests/test_cluster.py); here the
node is handed a poll that only records which source it was asked for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from aggregator.config.loader import Source, load_config
from aggregator.run.cluster import (
    FETCH_INTERVAL,
    POLL_TASK,
    QUEUE,
    RECOVERY_BOUND,
    ClusterScheduler,
)
from aggregator.store import open_cluster, open_store
from tests.conftest import config_text
from tests.daemonkit import wait_for

COUNT = 3


def _sources(tmp_path: Path, url: str) -> list[Source]:
    entries = [
        {
            "id": f"s{n}",
            "name": f"来源 {n}",
            "url": f"http://127.0.0.1:9/{n}.xml",
            "category": "测试",
        }
        for n in range(COUNT)
    ]
    path = tmp_path / "sources.toml"
    path.write_text(config_text(entries, database=url), encoding="utf-8")
    open_store(url).close()  # the store's schema, which the cluster's tables are part of
    return list(load_config(path).sources)


@contextmanager
def _started(url: str, name: str, **extra: Any) -> Iterator[tuple[ClusterScheduler, list[str]]]:
    """A started node, and the sources it was asked to poll, in order; stopped after."""
    polled: list[str] = []

    def poll(source_id: str) -> datetime:
        polled.append(source_id)
        return datetime.now(UTC) + timedelta(hours=1)  # the next poll: far off

    node = ClusterScheduler(url, poll, node=name, digest="same", rand=lambda: 0.0, **extra)
    node.start()
    try:
        yield node, polled
    finally:
        node.shutdown(wait=True, timeout=5)


def _pending(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT queueing_lock FROM procrastinate_jobs
               WHERE task_name = %s AND status IN ('todo', 'doing')""",
            [POLL_TASK],
        ).fetchall()
    return {lock for (lock,) in rows}


def _queue_first_polls(url: str, sources: list[Source]) -> None:
    """Each source's poll, due now, queued as another node would."""
    import procrastinate

    with open_cluster(url) as state:
        app = procrastinate.App(connector=state.job_connector())
        with app.open():
            for source in sources:
                app.configure_task(
                    POLL_TASK, queue=QUEUE, lock=source.id, queueing_lock=source.id
                ).defer(source_id=source.id)


def _doing(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")
        return int((row.fetchone() or (0,))[0])


def test_a_node_takes_no_poll_before_it_knows_its_sources(
    tmp_path: Path, postgres_url: str
) -> None:
    """A node started while polls are due leaves them until it has its sources: a
    poll taken without them would end that source's chain of polls for good."""
    sources = _sources(tmp_path, postgres_url)
    everyone = {s.id for s in sources}
    # Started: the job tables made; its sources not given yet.
    with _started(postgres_url, "late") as (node, polled):
        _queue_first_polls(postgres_url, sources)
        time.sleep(3 * FETCH_INTERVAL)  # real worker threads: a fetch would have run
        assert polled == [] and _pending(postgres_url) == everyone
        node.sync(sources, {})
        wait_for(lambda: set(polled) == everyone, 20, "every source polled")
        wait_for(lambda: _pending(postgres_url) == everyone, 10, "every next poll queued")


def test_a_chain_of_polls_lost_to_a_failure_is_queued_again(
    tmp_path: Path, postgres_url: str
) -> None:
    """A source whose pending poll is gone (a failure between a poll and the next
    one's deferral) is queued again within a heal interval, not at the next reload."""
    sources = _sources(tmp_path, postgres_url)
    everyone = {s.id for s in sources}
    with _started(postgres_url, "healer", heal_interval=0.5) as (node, polled):
        node.sync(sources, {})
        wait_for(lambda: _pending(postgres_url) == everyone and len(polled) == COUNT, 20, "polled")
        with psycopg.connect(postgres_url) as conn:
            conn.execute("DELETE FROM procrastinate_jobs WHERE queueing_lock = 's1'")
        assert _pending(postgres_url) == everyone - {"s1"}
        wait_for(lambda: polled.count("s1") == 2, 20, "s1 polled again")
        wait_for(lambda: _pending(postgres_url) == everyone, 10, "its chain goes on")


def test_a_dead_nodes_polls_are_all_taken_over_though_one_was_done(
    tmp_path: Path, postgres_url: str
) -> None:
    """A dead node left two polls running: s0's was done (its next poll queued, only
    its job not closed), s1's was not. s0's job is closed, s1 is polled again: the
    first one's refusal to be queued twice does not hold the other back."""
    sources = _sources(tmp_path, postgres_url)
    with _started(postgres_url, "survivor") as (node, polled):
        _queue_first_polls(postgres_url, sources[:2])
        with psycopg.connect(postgres_url) as conn:
            (dead,) = conn.execute(
                """INSERT INTO procrastinate_workers (last_heartbeat)
                   VALUES (now() - interval '1 hour') RETURNING id"""
            ).fetchone() or (None,)
            conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", [dead])
        _queue_first_polls(postgres_url, sources[:1])  # s0's next poll, queued by it
        node.sync(sources, {})
        wait_for(lambda: {"s0", "s1"} <= set(polled), 10 + RECOVERY_BOUND, "both polled")
        wait_for(lambda: _doing(postgres_url) == 0, 10, "no job left running")
        assert polled.count("s1") == 1
