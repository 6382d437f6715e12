"""The long-running service: scheduler, batched publishing, config reload, HTTP.

A thin layer: polling is poll.poll_source, timing is the scheduler, output is
publish.Publisher, serving is serve.FeedServer. This module wires them,
holds the last good config, and stops cleanly.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from aggregator.config.loader import (
    RESTART_SETTINGS,
    Config,
    Settings,
    default_base_url,
    load_config,
)
from aggregator.errors import AggregatorError, ConfigError, StartError, StoreError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from aggregator.machine import give_back_free_memory
from aggregator.parse.limits import ParseLimits
from aggregator.publish.formats import chosen as chosen_formats
from aggregator.publish.posts import PostWriter
from aggregator.publish.publisher import Publisher
from aggregator.run.cluster import ClusterScheduler, config_digest, node_name
from aggregator.run.pacing import Hold, hold, standing
from aggregator.run.poll import PollOutcome, poll_source
from aggregator.run.scheduler import PollScheduler
from aggregator.run.signals import SignalInbox
from aggregator.serve.metrics import Metrics, StoreFacts, TimedFetcher
from aggregator.serve.server import Access, FeedServer, PrivateRoute, max_age_for
from aggregator.serve.status import StatusReport, gather_report, report_json
from aggregator.serve.statuspage import render_html
from aggregator.store import open_store, slug_shelf
from aggregator.store.interface import Storage
from aggregator.store.records import FeedKey
from aggregator.store.retention import CLEANUP_INTERVAL, FIRST_CLEANUP_DELAY, cleanup

log = logging.getLogger("aggregator.daemon")

# How long a stop keeps publishing; the feeds not published by then keep their marks in
# the store and are published at the next start (or by `aggregator publish`).
PUBLISH_DRAIN_TIMEOUT = 30.0
# How long after that the feed being rendered may take to finish.
LAST_FEED_GRACE = 5.0
# How long the last WebSub pings may take at stop (Publisher.close).
PING_DRAIN_TIMEOUT = 5.0


def worst_stop_seconds(stop_timeout: float) -> float:
    """The longest a stop can take before the database is closed: running polls, then
    publishing (each bounded, the feed being rendered when the time is up included),
    then the last WebSub pings. A service manager must wait at least this long before it
    kills the daemon."""
    return stop_timeout + PUBLISH_DRAIN_TIMEOUT + LAST_FEED_GRACE + 2 * PING_DRAIN_TIMEOUT


def listen_failure(host: str, port: int, exc: OSError) -> str:
    """Why the server cannot listen on host:port, and what the operator can do."""
    where = f"cannot listen on {host}:{port}"
    choose = (
        "choose another with `port` in [settings] of the config file, "
        "or AGGREGATOR_PORT=<port> in the environment"
    )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the address is already in use (another aggregator daemon, or another "
            f"program); {choose}"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); {choose}"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"{where}: {host!r} is not an address of this machine; check `host` in [settings] "
            "(or AGGREGATOR_HOST)"
        )
    return f"{where}: {exc.strerror or exc}"


def log_outcome(outcome: PollOutcome) -> None:
    """One line per poll: a warning when it failed, info when it changed something,
    debug (with the next poll time) when there was nothing new."""
    line = f"source {outcome.source_id}: {outcome.describe()}"
    if outcome.failed:
        log.warning("%s", line)
    elif outcome.changed_feeds or outcome.moved_to:
        log.info("%s", line)
    else:
        when = outcome.next_poll.isoformat() if outcome.next_poll else "-"
        log.debug("%s; next poll at %s", line, when)


class DaemonLock:
    """One daemon per database: an exclusive lock on a file beside it."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreError(
                f"another aggregator daemon (pid {holder}) is already running on this database "
                f"({self.path}); stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class PublishQueue:
    """Collects changed feeds and publishes them in batches, off the poll threads."""

    def __init__(
        self,
        publish: Callable[[set[FeedKey], Callable[[], bool]], None],
        delay: float,
        drain: float = PUBLISH_DRAIN_TIMEOUT,
    ) -> None:
        self._publish = publish
        self.delay = delay
        self.drain = drain  # how long stop() keeps publishing
        self._give_up_at: float | None = None  # set by stop()
        self._pending: set[FeedKey] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, keys: set[FeedKey]) -> None:
        if keys:
            with self._lock:
                self._pending |= keys
            self._wake.set()

    def _take(self) -> set[FeedKey]:
        with self._lock:
            keys, self._pending = self._pending, set()
        return keys

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._stop.wait(self.delay)  # let a burst of polls accumulate
            self._wake.clear()
            self.flush()

    def _out_of_time(self) -> bool:
        return self._give_up_at is not None and time.monotonic() > self._give_up_at

    def flush(self) -> None:
        keys = self._take()
        if keys:
            try:
                self._publish(keys, self._out_of_time)
            except Exception:
                log.exception("publishing failed; will retry with the next change")
                with self._lock:
                    self._pending |= keys

    def stop(self) -> None:
        """Publish what is pending for at most `drain` seconds, then stop."""
        self._give_up_at = time.monotonic() + self.drain
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.drain + LAST_FEED_GRACE)
        if not self._thread.is_alive():
            self.flush()  # changes queued after the thread's last look


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch_interval: float = 1.0,
        stop_timeout: float | None = None,
        on_ready: Callable[[Daemon], None] | None = None,
        on_new_feeds: Callable[[list[str]], None] | None = None,
        port: int | None = None,
    ) -> None:
        """stop_timeout defaults to settings.stop_timeout; port overrides settings.port
        (0 picks a free one, for tests)."""
        self.config_path = config_path
        self.config: Config = load_config(config_path, slug_shelf_at=slug_shelf)
        self.clock = clock
        self.watch_interval = watch_interval
        self._stop_timeout = stop_timeout
        self.on_ready = on_ready
        self.on_new_feeds = on_new_feeds
        self._announced: set[str] = set()
        self.port = port
        self.abandoned_polls = False  # set when stop() gave up waiting for running polls
        database = self.config.settings.database
        # One daemon per SQLite file; any number of nodes on one PostgreSQL.
        self.lock = DaemonLock(database) if isinstance(database, Path) else None
        self.node = node_name(str(self.config.settings.output_dir))
        self.stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._config_stamp = self._stamp()
        self.store: Storage | None = None
        self.fetcher: Fetcher | None = None
        self.server: FeedServer | None = None
        self.scheduler: PollScheduler | ClusterScheduler | None = None
        self.publisher: Publisher | None = None
        self.queue: PublishQueue | None = None
        self.metrics = Metrics(self._store_facts)

    @property
    def stop_timeout(self) -> float:
        """How long a stop waits for running polls: settings.stop_timeout as reloaded,
        unless the constructor fixed it."""
        if self._stop_timeout is not None:
            return self._stop_timeout
        return self.config.settings.stop_timeout

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.config_path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    # --- polling and publishing ---

    def poll_one(self, source_id: str) -> datetime | None:
        source = self.config.source(source_id)
        if source is None or not source.enabled or self.stopping.is_set():
            return None
        assert self.store and self.fetcher and self.queue
        state = self.store.source_state(source_id)
        held = hold(standing(source, state), self.clock())
        if held is not None:  # stopped by 410 Gone, or inside a Retry-After window
            log.debug("source %s: %s; not polling", source_id, state.disabled_reason or held.value)
            return state.retry_not_before if held is Hold.RETRY_AFTER else None
        limits = ParseLimits.from_settings(self.config.settings)
        outcome = poll_source(source, self.store, self.fetcher, clock=self.clock, limits=limits)
        self.metrics.poll_done(source_id, outcome.result)
        log_outcome(outcome)
        self.queue.add(outcome.changed_feeds)
        return outcome.next_poll

    def _publish(self, keys: set[FeedKey], give_up: Callable[[], bool] | None = None) -> None:
        assert self.publisher
        written = self.publisher.publish(keys, give_up=give_up)
        self.metrics.published(len(written))
        if written:
            give_back_free_memory()
            names = ", ".join(sorted(k[0] if k[0] == "all" else f"{k[0]}/{k[1]}" for k in keys))
            log.info("published %d file(s) for changed feeds: %s", len(written), names)
        self._announce_new_feeds()
        self._write_posts()

    def _announce_new_feeds(self) -> None:
        """Tell the operator the URL of each feed the first time it exists."""
        assert self.publisher
        fresh = [url for url in self.publisher.feed_urls() if url not in self._announced]
        self._announced.update(fresh)
        if fresh and self.on_new_feeds:
            self.on_new_feeds(fresh)

    def _write_posts(self) -> None:
        if self.config.posts.enabled and self.store:
            PostWriter(self.config, self.store).sync()

    def cleanup(self) -> None:
        """The daily retention job: drop entries over the limits, republish their feeds."""
        assert self.store and self.queue
        try:
            result = cleanup(self.store, self.config, self.clock())
        except AggregatorError:
            log.exception("retention cleanup failed; will retry tomorrow")
            return
        self.metrics.retention_removed.inc(len(result.removed))
        self.queue.add(result.changed_feeds)

    # --- health and metrics ---

    def _store_facts(self) -> StoreFacts | None:
        if self.store is None:
            return None
        try:
            rows = self.store.source_rows()
            entries = self.store.entry_count()
        except AggregatorError:
            return None
        enabled = {s.id for s in self.config.enabled_sources}
        failing = sum(1 for r in rows if r["id"] in enabled and r["error_count"])
        return StoreFacts(entries, len(enabled), failing)

    def health(self) -> tuple[int, str, bytes]:
        """/healthz: 200 while the scheduler runs and the database answers, else 503."""
        problems = []
        if self.stopping.is_set():
            problems.append("stopping")
        if self.scheduler is None or not self.scheduler.running:
            problems.append("scheduler not running")
        if isinstance(self.scheduler, ClusterScheduler) and self.scheduler.agreement.problem():
            problems.append(self.scheduler.agreement.problem())
        try:
            assert self.store is not None
            self.store.entry_count()
        except (AssertionError, AggregatorError) as exc:
            problems.append(f"database does not answer: {exc or type(exc).__name__}")
        if problems:
            return 503, "text/plain; charset=utf-8", ("; ".join(problems) + "\n").encode()
        return 200, "text/plain; charset=utf-8", b"ok\n"

    # --- the status page ---

    def status_access(self) -> Access:
        """Who may see /status now (the settings as last reloaded)."""
        settings = self.config.settings
        return Access(settings.status_page, settings.status_allow)

    def _status_report(self, page: int | None = None) -> StatusReport | str:
        try:
            assert self.store is not None
            cluster = None
            if isinstance(self.scheduler, ClusterScheduler):
                cluster = self.scheduler.report()
            return gather_report(self.config, self.store, self.clock(), page=page, cluster=cluster)
        except (AssertionError, AggregatorError) as exc:
            return f"the database does not answer: {exc or type(exc).__name__}\n"

    def status_page(self, query: dict[str, str]) -> tuple[int, str, bytes]:
        """/status: every source's health, failing first, PAGE_SIZE sources a page
        (?page=N) with their charts, as HTML."""
        page = query.get("page", "1")
        if not (page.isascii() and page.isdigit()) or int(page) < 1:
            return 400, "text/plain; charset=utf-8", b"page: a number from 1\n"
        report = self._status_report(int(page))
        if isinstance(report, str):
            return 503, "text/plain; charset=utf-8", report.encode()
        return 200, "text/html; charset=utf-8", render_html(report)

    def status_json(self, query: dict[str, str]) -> tuple[int, str, bytes]:
        """/status.json: what `aggregator status --json` prints, every source."""
        report = self._status_report()
        if isinstance(report, str):
            return 503, "text/plain; charset=utf-8", report.encode()
        return 200, "application/json; charset=utf-8", (report_json(report) + "\n").encode()

    # --- config reload ---

    def request_reload(self) -> None:
        self._reload_requested.set()

    def reload(self) -> bool:
        """Apply the config file if it is valid; keep the last good one otherwise. A file
        that changed while it was read is left for the watcher to read again."""
        before = self._stamp()
        try:
            config = load_config(self.config_path, slug_shelf_at=slug_shelf)
            chosen_formats(config)  # the output formats are the publisher's to know
        except ConfigError as exc:
            if self._changed_since(before):
                return False
            # One line per event: the problems joined, each with file:line and key.
            log.error(
                "config reload rejected, keeping the last good config: %s",
                " | ".join(str(p) for p in exc.problems),
            )
            return False
        if self._changed_since(before):
            return False
        for name in RESTART_SETTINGS:
            old, new = getattr(self.config.settings, name), getattr(config.settings, name)
            if old != new:
                log.warning("changing %s needs a restart; keeping %s until then", name, old)
        self._apply(self._as_running(config))
        log.info("config reloaded: %d sources", len(config.sources))
        return True

    def _changed_since(self, stamp: tuple[int, int] | None) -> bool:
        """Whether the config file changed after `stamp`: then it was being written while
        it was read, and the watcher reads it again once it settles."""
        if self._stamp() == stamp:
            return False
        log.info("the config file changed while it was read; reading it again")
        return True

    def _as_running(self, config: Config) -> Config:
        """The config with the settings bound at start as they were then, and a base_url
        derived from host and port following the port actually served on."""
        settings = config.settings
        kept = {name: getattr(self.config.settings, name) for name in RESTART_SETTINGS}
        if settings.base_url == default_base_url(settings.host, settings.port):
            served = self.server.server_address[1] if self.server else kept["port"]
            kept["base_url"] = default_base_url(kept["host"], int(served))
        return replace(config, settings=replace(settings, **kept))

    def _apply(self, config: Config) -> None:
        assert self.store and self.scheduler and self.publisher and self.fetcher
        self.config = config
        self.publisher.config = config
        self.fetcher.limits = Limits.from_settings(config.settings)
        if self.server:
            self.server.max_age = max_age_for(config)
        if self.queue:
            self.queue.delay = config.settings.publish_delay
        self.store.sync_sources(config.sources)
        stored = {s.id: self.store.source_state(s.id).next_poll_at for s in config.sources}
        if isinstance(self.scheduler, ClusterScheduler):
            self.scheduler.digest = self._digest()
        self.scheduler.sync(config.sources, stored)

    def _watch(self) -> None:
        """Reload when asked (SIGHUP), or once the config file has changed and then stayed
        as it was for one more look: a file written in place (truncated, then written)
        is not read half-written, which for an empty file would mean no sources."""
        last_look = self._config_stamp
        while not self.stopping.wait(self.watch_interval):
            stamp = self._stamp()
            settled, last_look = stamp == last_look, stamp
            if (settled and stamp != self._config_stamp) or self._reload_requested.is_set():
                self._config_stamp = stamp
                self._reload_requested.clear()
                try:
                    self.reload()
                except Exception:  # the watcher must outlive any one failed reload
                    log.exception("config reload failed; keeping the last good config")

    # --- lifecycle ---

    def _listen(self, settings: Settings) -> FeedServer:
        port = settings.port if self.port is None else self.port
        try:
            return FeedServer(
                (settings.host, port),
                settings.output_dir,
                max_age=max_age_for(self.config),
                routes={
                    "/healthz": self.health,
                    "/metrics": self.metrics.render,
                    "/status": PrivateRoute(self.status_page, self.status_access, "/status"),
                    "/status.json": PrivateRoute(
                        self.status_json, self.status_access, "/status.json"
                    ),
                },
            )
        except OSError as exc:
            raise StartError(listen_failure(settings.host, port, exc)) from None

    def start(self) -> None:
        settings = self.config.settings
        if self.lock:
            self.lock.acquire()
        try:
            self.server = self._listen(settings)
            self.config = self._as_running(self.config)
            settings = self.config.settings
            self.store = open_store(settings.database)
            self.fetcher = TimedFetcher(
                self.metrics.fetch_seconds, Limits.from_settings(settings), settings.user_agent
            )
            self.publisher = Publisher(self.config, self.store)
            self.queue = PublishQueue(self._publish, settings.publish_delay)
            self.scheduler = self._scheduler(settings)
        except (OSError, AggregatorError):
            if self.server:
                self.server.server_close()
                self.server = None
            if self.lock:
                self.lock.release()
            raise
        # Everything, as a fresh publish would write it: a killed run's unfinished
        # publish included (and the temp files it left).
        self.metrics.published(len(self.publisher.publish()))
        self._announced.update(self.publisher.feed_urls())
        self._write_posts()
        self.server.start()
        log.info("serving %s on %s", settings.output_dir, self.server.url)
        if self.on_ready:  # before any poll can log, so what it prints stays in one piece
            self.on_ready(self)
        self.queue.start()
        self.scheduler.start()
        self._apply(self.config)
        self.scheduler.add_housekeeping(
            "retention",
            self.cleanup,
            CLEANUP_INTERVAL,
            datetime.now(UTC) + timedelta(seconds=FIRST_CLEANUP_DELAY),
        )
        threading.Thread(target=self._watch, name="config-watch", daemon=True).start()

    def _scheduler(self, settings: Settings) -> PollScheduler | ClusterScheduler:
        """APScheduler on one machine; procrastinate jobs shared by the nodes of a
        cluster on PostgreSQL (aggregator.run.cluster, docs/scaling.md)."""
        if isinstance(settings.database, Path):
            return PollScheduler(self.poll_one, workers=settings.workers, clock=self.clock)
        # Each node publishes every node's changes (its own published marks).
        if self.store is not None:
            self.store.set_node(self.node)
        threading.Thread(target=self._sweep, name="cluster-publish", daemon=True).start()
        return ClusterScheduler(
            settings.database,
            self.poll_one,
            node=self.node,
            digest=self._digest(),
            workers=settings.workers,
            per_host_limit=settings.per_host_limit,
            clock=self.clock,
        )

    def _digest(self) -> str:
        try:
            return config_digest(self.config_path.read_bytes())
        except OSError:
            return ""

    def _sweep(self) -> None:
        """In a cluster: publish what other nodes committed (their polls' feeds)."""
        while not self.stopping.wait(max(1.0, self.config.settings.publish_delay)):
            try:
                if self.store and self.queue:
                    self.queue.add(set(self.store.unpublished()) | set(self.store.holes()))
            except AggregatorError:
                log.warning("cannot read what is left to publish", exc_info=True)

    def stop(self) -> None:
        """Stop new polls, let running ones finish (bounded), flush, close."""
        self.stopping.set()
        if self.scheduler and not self.scheduler.shutdown(wait=True, timeout=self.stop_timeout):
            self.abandoned_polls = True
            log.warning("polls still running after %ss; stopping anyway", self.stop_timeout)
        if self.queue:
            self.queue.stop()
        if self.publisher:
            self.publisher.close(PING_DRAIN_TIMEOUT)  # last WebSub pings (bounded wait)
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.fetcher:
            self.fetcher.close()
        if self.store:
            self.store.close()
        if self.lock:
            self.lock.release()
        log.info("stopped")

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the config. The signals are read
        here, in the main thread's own code (run.signals says why)."""
        with SignalInbox((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)) as inbox:
            self.start()
            try:
                while not self.stopping.is_set():
                    for signum in inbox.wait(0.5):
                        self._on_signal(signum)
            finally:
                self.stop()

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum is signal.SIGHUP:
            self.request_reload()
        else:
            log.info("signal %s: stopping", signum.name)
            self.stopping.set()
