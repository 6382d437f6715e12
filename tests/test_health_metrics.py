"""/healthz and /metrics on the daemon's built-in server, over real HTTP."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.daemonkit import get, running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEMS = [
    Item("NW202112240805120001", "西安地铁新线路开通试运营", guid="a-1"),
    Item("NW202112241000000004", "西宝高速部分路段施工 请绕行", guid="a-2"),
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_healthz_and_metrics(server: FeedServer, write_config: Any) -> None:
    good = server.set("/good.xml", rss(ITEMS))
    path = write_config(
        [
            {"id": "good", "name": "好", "url": good, "category": "测试", "interval": 600},
            {"id": "bad", "name": "坏", "url": server.url("/missing.xml"), "category": "测试"},
        ],
        publish_delay=0.05,
    )
    with running(path) as daemon:
        assert daemon.server and daemon.store and daemon.scheduler
        base = daemon.server.url
        wait_for(
            lambda: server.hits("/good.xml") and server.hits("/missing.xml"), what="both polled"
        )
        last_publish = ("aggregator_last_publish_timestamp_seconds", ())
        wait_for(lambda: samples(get(base + "/metrics")[1])[last_publish] > 0, what="a publish")

        status, body = get(base + "/healthz")
        assert (status, body) == (200, "ok\n")

        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        found = samples(text)
        assert found[("aggregator_polls_total", (("outcome", "ok"), ("source", "good")))] == 1
        assert found[("aggregator_polls_total", (("outcome", "error"), ("source", "bad")))] == 1
        assert found[("aggregator_fetch_duration_seconds_count", ())] == 2
        assert found[("aggregator_fetch_duration_seconds_bucket", (("le", "+Inf"),))] == 2
        assert found[("aggregator_entries_stored", ())] == 2
        assert found[("aggregator_sources", ())] == 2
        assert found[("aggregator_sources_failing", ())] == 1
        assert found[last_publish] > 1.7e9
        assert "# TYPE aggregator_fetch_duration_seconds histogram" in text

        # The database stops answering: unhealthy, and the DB-backed gauges are absent.
        daemon.store.close()
        status, body = get(base + "/healthz")
        assert status == 503 and "database does not answer" in body
        assert "aggregator_entries_stored" not in get(base + "/metrics")[1]

        # The scheduler stops: unhealthy too.
        daemon.scheduler.shutdown()
        status, body = get(base + "/healthz")
        assert status == 503 and "scheduler not running" in body
