"""Several real `aggregator run` processes on one PostgreSQL (tests/pg.py) and one feed
server on 127.0.0.1: the cluster's guarantees (aggregator.run.cluster)."""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from aggregator.run.cluster import RECOVERY_BOUND
from aggregator.run.pacing import JITTER_FRACTION
from tests.conftest import config_text, run_aggregator
from tests.daemonkit import free_port, get, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.publishing import served

SOURCES = 6
ROOT = Path(__file__).resolve().parents[1]


class Watch:
    """What the feed server saw: polls in flight per source and per host, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.most_per_source: dict[str, int] = {}
        self.host_in_flight = 0
        self.most_per_host = 0
        self.started: dict[str, list[float]] = {}

    def handler(self, path: str, body: bytes, delay: float, slow_poll: int = 1) -> Any:
        def handle(request: BaseHTTPRequestHandler) -> None:
            with self.lock:
                self.in_flight[path] = self.in_flight.get(path, 0) + 1
                self.most_per_source[path] = max(
                    self.most_per_source.get(path, 0), self.in_flight[path]
                )
                self.host_in_flight += 1
                self.most_per_host = max(self.most_per_host, self.host_in_flight)
                self.started.setdefault(path, []).append(time.monotonic())
            slow = delay if len(self.started[path]) == slow_poll else 0.3  # that poll only
            try:
                if not _wait_unless_gone(request, slow):
                    return  # the node that asked died: its poll is no longer in flight
                request.send_response(200)
                request.send_header("Content-Type", "application/rss+xml")
                request.send_header("Content-Length", str(len(body)))
                request.end_headers()
                request.wfile.write(body)
            finally:
                with self.lock:
                    self.in_flight[path] -= 1
                    self.host_in_flight -= 1

        return handle


def _wait_unless_gone(request: BaseHTTPRequestHandler, delay: float) -> bool:
    """Wait delay seconds before answering; False as soon as the client hangs up."""
    end = time.monotonic() + delay
    while (left := end - time.monotonic()) > 0:
        readable, _, _ = select.select([request.connection], [], [], min(left, 0.1))
        if readable and request.connection.recv(1, socket.MSG_PEEK) == b"":
            return False
    return True


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def start_node(
    config: Path, folder: Path, *, healthy: bool = True
) -> tuple[subprocess.Popen[bytes], int]:
    """A real `aggregator run` publishing into folder, once its /healthz answers (200
    when healthy, else any answer: a node that disagrees answers 503)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AGGREGATOR_OUTPUT_DIR": str(folder),
        "AGGREGATOR_PORT": str(port),
    }
    log = (folder.parent / f"{folder.name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "run", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    up = _healthy if healthy else _answers
    wait_for(lambda: up(port), timeout=30, what=f"node {folder.name} answering")
    return process, port


def _answers(port: int) -> bool:
    try:
        get(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        return False
    return True


def _healthy(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


def _files(out: Path) -> dict[str, bytes]:
    return served(out)


def test_nodes_share_polls_politely_and_survive_a_killed_node(
    tmp_path: Path, postgres_url: str
) -> None:
    watch = Watch()
    with feed_server() as server:
        sources = _sources_one_slow(server, watch, SOURCES, slow_poll=1, quick=0.3)
        config = _cluster_config(tmp_path, sources, postgres_url, per_host_limit=2)
        nodes = [start_node(config, tmp_path / f"node{i}") for i in range(3)]
        try:
            # Every source polled; source 0 is being polled (slowly) by some node.
            wait_for(
                lambda: all(server.hits(f"/feed{n}.xml") >= 2 for n in range(1, SOURCES)),
                timeout=60,
                what="every quick source polled twice",
            )
            wait_for(lambda: watch.in_flight.get("/feed0.xml"), timeout=30, what="slow poll")
            # Kill the node polling it: its poll is started again by another within the bound.
            victim, again = _kill_and_time_takeover(nodes, tmp_path, watch, wait=15)
            assert again < RECOVERY_BOUND + 5
            survivors = [i for i, n in enumerate(nodes) if n is not victim]
            for index in survivors:
                assert _healthy(nodes[index][1])
            # Whichever node polled what, the nodes up publish the same bytes (the
            # same ETags), the taken-over source's feed included.
            outputs = [tmp_path / f"node{i}" for i in survivors]
            wait_for(
                lambda: (
                    (outputs[0] / "source" / "s0.xml").exists()
                    and _files(outputs[0]) == _files(outputs[1])
                ),
                timeout=30,
                what="the nodes up publishing the same bytes",
            )
            shown = run_aggregator("status", "--config", str(config))
            assert shown.returncode == 0, shown.stderr
            assert "3 node(s), 2 alive" in shown.stdout
            assert shown.stdout.count("config accepted") == 3
        finally:
            _stop(nodes)
    # Never two polls of one source at once, nor more than the limit to the host.
    assert max(watch.most_per_source.values()) == 1
    assert watch.most_per_host <= 2


def _sources_one_slow(
    server: FeedServer, watch: Watch, count: int, *, slow_poll: int, quick: float
) -> list[dict[str, Any]]:
    """count sources every 3 s: source 0 answers its slow_poll-th poll in 30 s (a node is
    killed while polling it), the others their first in `quick` seconds, then 0.3 s."""
    sources = []
    for n in range(count):
        path = f"/feed{n}.xml"
        body = rss([Item(f"NW2021122403{n:08d}", f"新闻 {n}")], title=f"来源 {n}")
        slow = watch.handler(path, body, 30.0, slow_poll=slow_poll)
        server.set(path, handler=slow if n == 0 else watch.handler(path, body, quick))
        sources.append(
            {
                "id": f"s{n}",
                "name": f"来源 {n}",
                "url": server.url(path),
                "category": "测试",
                "interval": "3s",
                "share_code": {"param": "infoCode"},
            }
        )
    return sources


def _cluster_config(
    tmp_path: Path, sources: list[dict[str, Any]], postgres_url: str, **settings: Any
) -> Path:
    """The config file every node reads; fetches may take a minute (the slow source)."""
    config = tmp_path / "sources.toml"
    config.write_text(
        config_text(
            sources,
            database=postgres_url,
            base_url="http://feeds.example.org",
            read_timeout="60s",
            fetch_deadline="60s",
            **settings,
        ),
        encoding="utf-8",
    )
    return config


def _kill_and_time_takeover(
    nodes: list[tuple[subprocess.Popen[bytes], int]],
    tmp_path: Path,
    watch: Watch,
    *,
    wait: float,
    latest: bool = False,
) -> tuple[Any, float]:
    """SIGKILL the node polling source 0; the node, and the seconds until another node
    starts that poll again (waited for up to RECOVERY_BOUND + wait)."""
    victim = _node_polling(nodes, tmp_path, latest=latest)
    polls = len(watch.started.get("/feed0.xml", []))
    killed_at = time.monotonic()
    victim[0].send_signal(signal.SIGKILL)
    victim[0].wait(timeout=10)
    wait_for(
        lambda: len(watch.started.get("/feed0.xml", [])) > polls,
        timeout=RECOVERY_BOUND + wait,
        what="the killed node's poll taken over",
    )
    return victim, watch.started["/feed0.xml"][polls] - killed_at


def _node_polling(
    nodes: list[tuple[subprocess.Popen[bytes], int]], tmp_path: Path, *, latest: bool = False
) -> Any:
    """The node whose worker started the poll of source s0 (its log says so; with
    latest, the node that started one last, by the logs' timestamps)."""
    started = []
    for index, node in enumerate(nodes):
        lines = (tmp_path / f"node{index}.log").read_text(errors="replace").splitlines()
        starts = [line for line in lines if "Starting job" in line and "(source_id='s0')" in line]
        if starts:
            started.append((starts[-1][:23], index, node))
    if not started:
        pytest.fail("no node is polling s0")
    return max(started)[2] if latest else min(started, key=lambda s: s[1])[2]


def _stop(nodes: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    for process, _ in nodes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in nodes:
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()


def _quick_sources(server: FeedServer, watch: Watch, count: int, **extra: Any) -> list[Any]:
    """count sources answering in 50 ms, their polls' start times in watch.started."""
    sources = []
    for n in range(count):
        path = f"/feed{n}.xml"
        body = rss([Item(f"NW2021122404{n:08d}", f"新闻 {n}")], title=f"来源 {n}")
        server.set(path, handler=watch.handler(path, body, 0.05))
        sources.append(
            {
                "id": f"s{n}",
                "name": f"来源 {n}",
                "url": server.url(path),
                "category": "测试",
                "share_code": {"param": "infoCode"},
                **extra,
            }
        )
    return sources


def _polls_started(log: Path) -> int:
    """How many polls a node's worker started (procrastinate logs each job it starts)."""
    return log.read_text(errors="replace").count("Starting job aggregator.poll")


def test_nodes_with_different_config_files_do_not_fight(tmp_path: Path, postgres_url: str) -> None:
    watch = Watch()
    with feed_server() as server:
        sources = _quick_sources(server, watch, 3, interval="3s")
        extra = _quick_sources(server, watch, 4, interval="3s")[3]  # only B's file has it
        settings = {"database": postgres_url, "base_url": "http://feeds.example.org"}
        accepted = tmp_path / "a.toml"
        accepted.write_text(config_text(sources, **settings), encoding="utf-8")
        other = tmp_path / "b.toml"
        other.write_text(config_text([*sources, extra], **settings), encoding="utf-8")
        nodes = [start_node(accepted, tmp_path / "nodeA")]
        try:
            nodes.append(start_node(other, tmp_path / "nodeB", healthy=False))
            a_port, b_port = nodes[0][1], nodes[1][1]
            b_id = f"{socket.gethostname()}:{tmp_path / 'nodeB'}"
            # B says what is wrong, on /healthz (never 200 meanwhile), and keeps serving.
            answers: list[tuple[int, str]] = []

            def b_says_it_differs() -> bool:
                answers.append(get(f"http://127.0.0.1:{b_port}/healthz"))
                return "config differs from the cluster's accepted version 1" in answers[-1][1]

            wait_for(b_says_it_differs, timeout=30, what="node B saying its config differs")
            assert {code for code, _ in answers} == {503}
            # A keeps polling its sources; B polls nothing, and nobody polls B's extra one.
            wait_for(
                lambda: all(server.hits(f"/feed{n}.xml") >= 3 for n in range(3)),
                timeout=60,
                what="node A polling every source",
            )
            assert server.hits("/feed3.xml") == 0
            assert _polls_started(tmp_path / "nodeB.log") == 0
            assert _polls_started(tmp_path / "nodeA.log") >= 9
            # Both nodes' /status and /status.json show the nodes and the disagreement.
            for port in (a_port, b_port):
                code, body = get(f"http://127.0.0.1:{port}/status.json")
                assert code == 200
                cluster = json.loads(body)["cluster"]
                assert cluster["disagreeing"] == [b_id]
                states = {n["id"]: (n["state"], n["config_agrees"]) for n in cluster["nodes"]}
                assert states[b_id] == ("alive", False)
                assert sorted(states.values()) == [("alive", False), ("alive", True)]
                code, page = get(f"http://127.0.0.1:{port}/status")
                assert code == 200 and "DIFFERS from the accepted one" in page
            assert json.loads(get(f"http://127.0.0.1:{b_port}/status.json")[1])["cluster"][
                "problem"
            ].startswith("config differs")
            assert (
                json.loads(get(f"http://127.0.0.1:{a_port}/status.json")[1])["cluster"]["problem"]
                is None
            )
            # aggregator status, with either file.
            shown = run_aggregator("status", "--config", str(other))
            assert shown.returncode == 0, shown.stderr
            assert "2 node(s), 2 alive" in shown.stdout
            assert "DIFFERS from the accepted one" in shown.stdout
            assert f"config disagreement: {b_id}" in shown.stdout
            assert "this config file: config differs" in shown.stdout
            shown = run_aggregator("status", "--config", str(accepted))
            assert "this config file" not in shown.stdout
            assert f"config disagreement: {b_id}" in shown.stdout
            # B's file made the same as the accepted one: B agrees and takes polls.
            other.write_bytes(accepted.read_bytes())
            wait_for(lambda: _healthy(b_port), timeout=30, what="node B agreeing")
            wait_for(
                lambda: _polls_started(tmp_path / "nodeB.log") > 0,
                timeout=60,
                what="node B taking polls",
            )
        finally:
            _stop(nodes)
    assert max(watch.most_per_source.values()) == 1


def _job_table_analyzed(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'"
        ).fetchone()
    return row is not None and row[0] is not None


def test_every_source_is_polled_once_per_interval_across_the_cluster(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two nodes, 8 sources every 3 s, watched for a window of several intervals: no
    source polled twice within its interval (the next poll is decided from the end of
    the last one, interval plus jitter), none missed (each gap at most the interval
    with jitter plus the documented RECOVERY_BOUND)."""
    interval, count, window = 3.0, 8, 24.0
    watch = Watch()
    with feed_server() as server:
        sources = _quick_sources(server, watch, count, interval="3s")
        config = tmp_path / "sources.toml"
        config.write_text(
            config_text(sources, database=postgres_url, base_url="http://feeds.example.org"),
            encoding="utf-8",
        )
        nodes = [start_node(config, tmp_path / f"node{i}") for i in range(2)]
        try:
            wait_for(
                lambda: all(server.hits(f"/feed{n}.xml") for n in range(count)),
                timeout=60,
                what="every source polled once",
            )
            assert _job_table_analyzed(postgres_url)  # by the node that queued the polls
            opened = time.monotonic()
            time.sleep(window)  # real processes: their own clocks run the polls
            closed = time.monotonic()
        finally:
            _stop(nodes)
        took = {n: _polls_started(tmp_path / f"node{n}.log") for n in range(2)}
    latest_gap = interval * (1 + JITTER_FRACTION) + RECOVERY_BOUND
    for n in range(count):
        starts = [t for t in watch.started[f"/feed{n}.xml"] if t <= closed]
        seen = [t for t in starts if t >= opened]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= interval, (n, gaps)  # never twice within an interval
        assert max(gaps) <= latest_gap, (n, gaps)  # none missed
        assert closed - starts[-1] <= latest_gap
        assert len(seen) >= int(window // latest_gap)
    assert max(watch.most_per_source.values()) == 1
    assert sum(took.values()) >= count * int(window // latest_gap)


def test_a_node_polls_as_many_sources_at_once_as_its_workers(
    tmp_path: Path, postgres_url: str
) -> None:
    """`workers` polls at once on one node, within per_host_limit: not the cpu_count + 4
    of asyncio's default thread pool (6 on 2 cores)."""
    count = 12
    watch = Watch()
    with feed_server() as server:
        sources = []
        for n in range(count):
            path = f"/slow{n}.xml"
            body = rss([Item(f"NW2021122405{n:08d}", f"慢新闻 {n}")], title=f"慢来源 {n}")
            server.set(path, handler=watch.handler(path, body, 4.0))  # its first poll
            sources.append(
                {
                    "id": f"s{n}",
                    "name": f"慢来源 {n}",
                    "url": server.url(path),
                    "category": "测试",
                    "interval": "10s",
                }
            )
        config = _cluster_config(
            tmp_path, sources, postgres_url, workers=count, per_host_limit=count
        )
        nodes = [start_node(config, tmp_path / "node0")]
        try:
            wait_for(
                lambda: all(server.hits(f"/slow{n}.xml") for n in range(count)),
                timeout=60,
                what="every source polled once",
            )
        finally:
            _stop(nodes)
    assert watch.most_per_host >= count - 2, watch.most_per_host


def test_a_killed_nodes_poll_is_taken_over_with_a_queue_of_due_polls(
    tmp_path: Path, postgres_url: str
) -> None:
    """More sources than the cluster keeps up with (41 polls due every 3 s, two nodes
    with one worker each, a second a poll): the poll a killed node had running is
    taken over within the bound all the same."""
    watch = Watch()
    with feed_server() as server:
        # Source 0 is slow on its second poll: a node is killed while polling it.
        sources = _sources_one_slow(server, watch, 41, slow_poll=2, quick=1.0)
        config = _cluster_config(tmp_path, sources, postgres_url, workers=1, per_host_limit=2)
        nodes = [start_node(config, tmp_path / f"node{i}") for i in range(2)]
        try:
            wait_for(
                lambda: (
                    len(watch.started.get("/feed0.xml", [])) == 2
                    and watch.in_flight.get("/feed0.xml")
                ),
                timeout=90,
                what="the slow second poll",
            )
            _, again = _kill_and_time_takeover(nodes, tmp_path, watch, wait=40, latest=True)
        finally:
            _stop(nodes)
    # Within the bound and the one poll the surviving worker was busy with.
    assert again < RECOVERY_BOUND + 3, again
