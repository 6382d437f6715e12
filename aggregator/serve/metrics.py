"""Prometheus metrics for the daemon, served at /metrics.

prometheus_client writes the text exposition format (escaping, histogram
buckets, HELP/TYPE lines) the way Prometheus expects it. Each Daemon has its
own registry, so two daemons in one process (tests) never share counters.
Counts that live in the database (entries, failing sources) are read from it
at scrape time instead of being mirrored in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.fetch.fetcher import Fetcher
from aggregator.models import FetchResult

# The classic text format, which generate_latest writes and every Prometheus reads
# (the library's CONTENT_TYPE_LATEST names a newer version in recent releases).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Feed fetches: mostly well under a second, the slow tail up to the deadline.
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class StoreFacts:
    """What the database says at scrape time."""

    entries: int
    sources: int
    sources_failing: int


class _StoreCollector(Collector):
    def __init__(self, read: Callable[[], StoreFacts | None]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        facts = self._read()
        if facts is None:  # the database does not answer; /healthz says so
            return
        yield GaugeMetricFamily(
            "aggregator_entries_stored", "Entries in the database.", value=facts.entries
        )
        yield GaugeMetricFamily(
            "aggregator_sources", "Enabled sources in the config.", value=facts.sources
        )
        yield GaugeMetricFamily(
            "aggregator_sources_failing",
            "Enabled sources whose last poll failed.",
            value=facts.sources_failing,
        )


class Metrics:
    def __init__(self, read_store: Callable[[], StoreFacts | None] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "aggregator_polls",
            "Polls by source and outcome (ok, not_modified, unchanged, error, gone).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.fetch_seconds = Histogram(
            "aggregator_fetch_duration_seconds",
            "Time to fetch a feed, including redirects and reading the body.",
            buckets=FETCH_BUCKETS,
            registry=self.registry,
        )
        self.last_publish = Gauge(
            "aggregator_last_publish_timestamp_seconds",
            "Unix time of the last publish that rewrote at least one file.",
            registry=self.registry,
        )
        self.published_files = Counter(
            "aggregator_published_files", "Feed files rewritten.", registry=self.registry
        )
        self.retention_removed = Counter(
            "aggregator_retention_removed_entries",
            "Entries removed by retention.",
            registry=self.registry,
        )
        if read_store is not None:
            self.registry.register(_StoreCollector(read_store))

    def poll_done(self, source_id: str, outcome: str) -> None:
        self.polls.labels(source=source_id, outcome=outcome).inc()

    def published(self, files: int, at: float | None = None) -> None:
        if files:
            self.published_files.inc(files)
            self.last_publish.set(time.time() if at is None else at)

    def render(self) -> tuple[int, str, bytes]:
        """The /metrics answer: (status, content type, body)."""
        return 200, CONTENT_TYPE, generate_latest(self.registry)


class TimedFetcher(Fetcher):
    """A Fetcher that records each fetch's duration, whatever its outcome."""

    def __init__(self, histogram: Histogram, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._histogram = histogram

    def fetch(self, url: str, **kwargs: Any) -> FetchResult:
        with self._histogram.time():
            return super().fetch(url, **kwargs)
