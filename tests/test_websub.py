"""WebSub: a tiny local hub receives the publish pings; failures are retried, never block."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from aggregator.publish.publisher import Publisher
from aggregator.publish.websub import HubNotifier
from tests.publishing import record, site


class Hub(ThreadingHTTPServer):
    """Answers publish pings with the next queued status (204 when none is left)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.pings: list[dict[str, list[str]]] = []
        self.agents: list[str] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        super().__init__(("127.0.0.1", 0), _HubHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hub"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, list[str]]]:
        with self.received:
            self.received.wait_for(lambda: len(self.pings) >= count, timeout)
            return list(self.pings)


class _HubHandler(BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.path == "/moved":  # the hub moved: the ping must follow, still a POST
            self.rfile.read(length)
            self.send_response(308)
            self.send_header("Location", "/hub")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.agents.append(self.headers.get("User-Agent", ""))
        form = parse_qs(self.rfile.read(length).decode())
        with self.server.received:
            status = self.server.statuses.pop(0) if self.server.statuses else 204
            if status < 300:
                self.server.pings.append(form)
                self.server.received.notify_all()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = Hub()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_hub_gets_a_publish_ping_for_each_changed_feed(hub: Hub, write_config: Any) -> None:
    with site(write_config, hub=hub.url) as s:
        notifier = HubNotifier(delays=(0.05, 0.05))
        publisher = Publisher(s.config, s.store, notifier=notifier)
        s.add("yaowen", record(1), record(2))
        publisher.publish()
        feeds = ("all", "category/sanqindushibao", "tag/sanqin-dushibao-xinwen", "source/yaowen")
        first = {  # every format of every changed feed
            f"http://feeds.example.org/{feed}{suffix}"
            for feed in feeds
            for suffix in (".xml", ".json", ".rss")
        }
        pings = hub.wait_for(len(first))
        assert all(p["hub.mode"] == ["publish"] for p in pings)
        assert {p["hub.url"][0] for p in pings} == first

        # Nothing changed: no ping. One new entry from the other source: its feeds only.
        publisher.publish()
        changed = s.add("jiaotong", record(3))
        publisher.publish(changed)
        assert notifier.wait_idle(10)
        pings = hub.wait_for(len(first) + 15)
        topics = [p["hub.url"][0] for p in pings[len(first) :]]
        publisher.close()
    assert "http://feeds.example.org/source/jiaotong.xml" in topics
    assert "http://feeds.example.org/all.json" in topics
    assert "http://feeds.example.org/tag/jiaotong.rss" in topics
    assert "http://feeds.example.org/source/yaowen.xml" not in topics
    assert len(topics) == len(set(topics)) == 15


def test_failed_pings_are_logged_and_retried(
    hub: Hub, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hub.statuses = [503, 500]
    notifier = HubNotifier(delays=(0.05, 0.05, 0.05))
    with caplog.at_level(logging.WARNING, logger="aggregator.websub"):
        notifier.notify(hub.url, ["http://feeds.example.org/all.xml"])
        pings = hub.wait_for(1)
        notifier.close()
    assert [p["hub.url"] for p in pings] == [["http://feeds.example.org/all.xml"]]
    assert notifier.delivered == [(hub.url, "http://feeds.example.org/all.xml")]
    assert "HTTP 503" in caplog.text and "HTTP 500" in caplog.text


def test_a_ping_follows_a_moved_hub_and_names_the_aggregator(hub: Hub) -> None:
    notifier = HubNotifier(user_agent="aggregator-test/1", delays=())
    notifier.notify(hub.url.replace("/hub", "/moved"), ["http://feeds.example.org/all.xml"])
    pings = hub.wait_for(1)
    notifier.close()
    assert [p["hub.url"] for p in pings] == [["http://feeds.example.org/all.xml"]]
    assert hub.agents == ["aggregator-test/1"]


def test_unreachable_hub_never_blocks_publishing(write_config: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hub"
    with site(write_config, hub=dead) as s:
        notifier = HubNotifier(delays=(0.01,))
        publisher = Publisher(s.config, s.store, notifier=notifier)
        s.add("yaowen", record(1))
        written = publisher.publish()  # returns with the pings still queued
        assert written
        assert (s.out / "all.xml").exists()
        for _ in range(50):
            if len(notifier.given_up) == 12:
                break
            notifier.wait_idle(1)
            threading.Event().wait(0.02)
        publisher.close()
    assert len(notifier.given_up) == 12 and not notifier.delivered  # 4 feeds, 3 formats
