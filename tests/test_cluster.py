"""Several real `aggregator run` processes on one PostgreSQL (tests/pg.py) and one feed
server on 127.0.0.1: the cluster's guarantees (aggregator.run.cluster)."""

from __future__ import annotations

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
from tests.conftest import config_text, run_aggregator
from tests.daemonkit import free_port, get, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

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

    def handler(self, path: str, body: bytes, delay: float) -> Any:
        def handle(request: BaseHTTPRequestHandler) -> None:
            with self.lock:
                self.in_flight[path] = self.in_flight.get(path, 0) + 1
                self.most_per_source[path] = max(
                    self.most_per_source.get(path, 0), self.in_flight[path]
                )
                self.host_in_flight += 1
                self.most_per_host = max(self.most_per_host, self.host_in_flight)
                self.started.setdefault(path, []).append(time.monotonic())
            slow = delay if len(self.started[path]) == 1 else 0.3  # only its first poll
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


def start_node(config: Path, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
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
    wait_for(lambda: _healthy(port), timeout=30, what=f"node {folder.name} healthy")
    return process, port


def _healthy(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_nodes_share_polls_politely_and_survive_a_killed_node(
    tmp_path: Path, postgres_url: str
) -> None:
    watch = Watch()
    with feed_server() as server:
        sources = []
        for n in range(SOURCES):
            path = f"/feed{n}.xml"
            body = rss([Item(f"NW2021122403{n:08d}", f"新闻 {n}")], title=f"来源 {n}")
            # A slow source 0: a node is killed while polling it.
            delay = 30.0 if n == 0 else 0.3
            server.set(path, handler=watch.handler(path, body, delay))
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
        config = tmp_path / "sources.toml"
        config.write_text(
            config_text(
                sources,
                database=postgres_url,
                base_url="http://feeds.example.org",
                per_host_limit=2,
                read_timeout="60s",
                fetch_deadline="60s",
            ),
            encoding="utf-8",
        )
        nodes = [start_node(config, tmp_path / f"node{i}") for i in range(3)]
        try:
            # Every source polled; source 0 is being polled (slowly) by some node.
            wait_for(
                lambda: all(server.hits(f"/feed{n}.xml") >= 2 for n in range(1, SOURCES)),
                timeout=60,
                what="every quick source polled twice",
            )
            wait_for(lambda: watch.in_flight.get("/feed0.xml"), timeout=30, what="slow poll")
            # Kill the node polling it: the one with a poll in flight for long.
            victim = _node_polling(nodes, tmp_path)
            killed_at = time.monotonic()
            victim[0].send_signal(signal.SIGKILL)
            victim[0].wait(timeout=10)
            # Its poll is started again by another node within the bound.
            wait_for(
                lambda: len(watch.started.get("/feed0.xml", [])) >= 2,
                timeout=RECOVERY_BOUND + 15,
                what="the killed node's poll taken over",
            )
            again = watch.started["/feed0.xml"][1] - killed_at
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
            for process, _ in nodes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process, _ in nodes:
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()
    # Never two polls of one source at once, nor more than the limit to the host.
    assert max(watch.most_per_source.values()) == 1
    assert watch.most_per_host <= 2


def _node_polling(nodes: list[tuple[subprocess.Popen[bytes], int]], tmp_path: Path) -> Any:
    """The node whose worker started the poll of source s0 (its log says so)."""
    for index, node in enumerate(nodes):
        text = (tmp_path / f"node{index}.log").read_text(errors="replace")
        if "(source_id='s0')" in text:
            return node
    pytest.fail("no node is polling s0")
