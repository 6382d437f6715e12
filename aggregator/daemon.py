"""The long-running service: scheduler, batched publishing, config reload, HTTP.

A thin layer: polling is poll.poll_source, timing is the scheduler, output is
publish.Publisher, serving is serve.FeedServer. This module wires them,
holds the last good config, and stops cleanly.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

from aggregator.config import Config, load_config
from aggregator.errors import AggregatorError, ConfigError, StoreError
from aggregator.fetch import Fetcher, Limits
from aggregator.pollmany import poll_one
from aggregator.publish import Publisher
from aggregator.scheduler import PollScheduler
from aggregator.serve import FeedServer
from aggregator.store import FeedKey, Store

log = logging.getLogger("aggregator.daemon")


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

    def __init__(self, publish: Callable[[set[FeedKey]], None], delay: float) -> None:
        self._publish = publish
        self._delay = delay
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
            self._stop.wait(self._delay)  # let a burst of polls accumulate
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        keys = self._take()
        if keys:
            try:
                self._publish(keys)
            except Exception:
                log.exception("publishing failed; will retry with the next change")
                with self._lock:
                    self._pending |= keys

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch_interval: float = 1.0,
        stop_timeout: float = 30.0,
        on_ready: Callable[[Daemon], None] | None = None,
    ) -> None:
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.clock = clock
        self.watch_interval = watch_interval
        self.stop_timeout = stop_timeout
        self.on_ready = on_ready
        self.lock = DaemonLock(self.config.settings.database)
        self.stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._config_stamp = self._stamp()
        self.store: Store | None = None
        self.fetcher: Fetcher | None = None
        self.server: FeedServer | None = None
        self.scheduler: PollScheduler | None = None
        self.publisher: Publisher | None = None
        self.queue: PublishQueue | None = None

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
        if self.store.source_state(source_id).disabled_reason:
            log.info(
                "source %s is disabled (%s); not polling",
                source_id,
                self.store.source_state(source_id).disabled_reason,
            )
            return None
        outcome = poll_one(source, self.store, self.fetcher, clock=self.clock)
        self.queue.add(outcome.changed_feeds)
        return outcome.next_poll

    def _publish(self, keys: set[FeedKey]) -> None:
        assert self.publisher
        written = self.publisher.publish(keys)
        if written:
            log.info("published %d file(s)", len(written))

    # --- config reload ---

    def request_reload(self) -> None:
        self._reload_requested.set()

    def reload(self) -> bool:
        """Apply the config file if it is valid; keep the last good one otherwise."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload rejected, keeping the last good config:\n%s", exc)
            return False
        if config.settings.database != self.config.settings.database:
            log.warning(
                "changing the database needs a restart; keeping %s", self.config.settings.database
            )
            config = replace(
                config, settings=replace(config.settings, database=self.config.settings.database)
            )
        self._apply(config)
        log.info("config reloaded: %d sources", len(config.sources))
        return True

    def _apply(self, config: Config) -> None:
        assert self.store and self.scheduler and self.publisher
        self.config = config
        self.publisher.config = config
        self.store.sync_sources(config.sources)
        stored = {s.id: self.store.source_state(s.id).next_poll_at for s in config.sources}
        self.scheduler.sync(config.sources, stored)

    def _watch(self) -> None:
        while not self.stopping.wait(self.watch_interval):
            stamp = self._stamp()
            if stamp != self._config_stamp or self._reload_requested.is_set():
                self._config_stamp = stamp
                self._reload_requested.clear()
                self.reload()

    # --- lifecycle ---

    def start(self) -> None:
        settings = self.config.settings
        self.lock.acquire()
        try:
            self.store = Store(settings.database)
            self.fetcher = Fetcher(Limits.from_settings(settings), settings.user_agent)
            self.publisher = Publisher(self.config, self.store)
            self.queue = PublishQueue(self._publish, settings.publish_delay)
            self.scheduler = PollScheduler(
                self.poll_one, workers=settings.workers, clock=self.clock
            )
            self.server = FeedServer((settings.host, settings.port), settings.output_dir)
        except (OSError, AggregatorError):
            self.lock.release()
            raise
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        self.publisher.publish()
        self.queue.start()
        self.scheduler.start()
        self._apply(self.config)
        self.server.start()
        threading.Thread(target=self._watch, name="config-watch", daemon=True).start()
        log.info("serving %s on %s", settings.output_dir, self.server.url)

    def stop(self) -> None:
        """Stop new polls, let running ones finish (bounded), flush, close."""
        self.stopping.set()
        if self.scheduler:
            self.scheduler.scheduler.pause()
            finisher = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True})
            finisher.start()
            finisher.join(self.stop_timeout)
            if finisher.is_alive():
                log.warning("polls still running after %ss; stopping anyway", self.stop_timeout)
        if self.queue:
            self.queue.stop()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.fetcher:
            self.fetcher.close()
        if self.store:
            self.store.close()
        self.lock.release()
        log.info("stopped")

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the config."""

        def stop_handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stopping.set()

        def hup_handler(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop_handler)
        signal.signal(signal.SIGINT, stop_handler)
        signal.signal(signal.SIGHUP, hup_handler)
        self.start()
        if self.on_ready:
            self.on_ready(self)
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            self.stop()
