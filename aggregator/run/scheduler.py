"""One APScheduler (3.x) job per enabled source, reconciled with the config.

Each job runs at most once at a time (max_instances=1), missed runs are
coalesced, and after every poll the job is moved to the time the pure
schedule module decided (backoff, Retry-After, Cache-Control), so the
interval trigger is only the fallback rhythm.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator.config.loader import Source
from aggregator.run.pacing import first_poll_at, jitter

log = logging.getLogger("aggregator.scheduler")

HOUSEKEEPING_PREFIX = "@"  # never the start of a source id, so no clash


class _QuietOverlapSkips(logging.Filter):
    """APScheduler warns each time a source's timer fires while its last poll still runs
    (a slow server, a busy machine). That is max_instances=1 doing its job: the running
    poll sets the next poll time itself when it ends. The soak saw hundreds of these
    lines in a busy minute, each one telling an operator nothing is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_QuietOverlapSkips())


class PollScheduler:
    def __init__(
        self,
        run_poll: Callable[[str], datetime | None],
        *,
        workers: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        """run_poll(source_id) polls one source and returns when to poll it next."""
        self._run_poll = run_poll
        self._clock = clock
        self._rand = rand
        self._intervals: dict[str, float] = {}
        # Jobs in flight, counted here: APScheduler's shutdown(wait=True) holds its job
        # store lock while it waits, so a finishing poll calling modify_job would deadlock.
        self._running = 0
        self._idle = threading.Condition()
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def start(self, paused: bool = False) -> None:
        """paused: jobs are scheduled but nothing runs until resume() (for inspection)."""
        self.scheduler.start(paused=paused)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop starting jobs; with wait, let running ones finish (up to timeout seconds).

        Returns True when no job is left running.
        """
        if not self.scheduler.running:
            return self.wait_idle(0)
        self.scheduler.pause()
        idle = self.wait_idle(timeout if wait else 0)
        # Nothing of ours calls into the scheduler once idle, so this cannot deadlock;
        # a job still running past the bound is left to finish on its own thread.
        self.scheduler.shutdown(wait=False)
        return idle

    def wait_idle(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)

    def _tracked(self, func: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with self._idle:
                self._running += 1
            try:
                func()
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        return run

    def job_ids(self) -> set[str]:
        """The sources that have a poll job."""
        return {job.id for job in self.scheduler.get_jobs() if job.id in self._intervals}

    def add_housekeeping(
        self, name: str, func: Callable[[], object], interval: float, first: datetime
    ) -> None:
        """A periodic job that is not a source (retention): sync() leaves it alone."""
        self.scheduler.add_job(
            self._tracked(func),
            trigger=IntervalTrigger(seconds=interval, timezone=UTC),
            id=HOUSEKEEPING_PREFIX + name,
            name=name,
            next_run_time=first,
            replace_existing=True,
        )

    def next_run(self, source_id: str) -> datetime | None:
        job = self.scheduler.get_job(source_id)
        return job.next_run_time if job else None

    def trigger_of(self, source_id: str) -> IntervalTrigger | None:
        job = self.scheduler.get_job(source_id)
        return job.trigger if job else None

    def sync(self, sources: Iterable[Source], stored_next: Mapping[str, datetime | None]) -> None:
        """Make the jobs match the enabled sources: add new, drop removed, retime changed."""
        wanted = {s.id: s for s in sources if s.enabled}
        for job_id in set(self._intervals) - set(wanted):
            self._remove(job_id)
            log.info("source %s: stopped polling (removed or disabled)", job_id)
        now = self._clock()
        due = [s for s in wanted.values() if not ((t := stored_next.get(s.id)) and t > now)]
        for source in wanted.values():
            if source.id not in self._intervals:
                when = first_poll_at(
                    now, stored_next.get(source.id), source.interval, self._rand(), len(due)
                )
                self._add(source, when)
                log.info("source %s: first poll at %s", source.id, when.isoformat())
            elif self._intervals[source.id] != source.interval:
                # The new rhythm applies from the next poll: the time already decided
                # (which may be a backoff or a Retry-After) stays.
                self._intervals[source.id] = source.interval
                try:
                    self.scheduler.modify_job(source.id, trigger=self._trigger(source.interval))
                except JobLookupError:  # the job went away meanwhile: schedule it afresh
                    stored = stored_next.get(source.id)
                    self._add(source, first_poll_at(now, stored, source.interval, self._rand()))
                log.info("source %s: interval now %ss", source.id, source.interval)

    def _trigger(self, interval: float) -> IntervalTrigger:
        return IntervalTrigger(seconds=interval, jitter=jitter(interval, 1.0) or None, timezone=UTC)

    def _add(self, source: Source, when: datetime) -> None:
        self._intervals[source.id] = source.interval
        self.scheduler.add_job(
            self._job,
            trigger=self._trigger(source.interval),
            args=[source.id],
            id=source.id,
            name=f"poll {source.id}",
            next_run_time=when,
            replace_existing=True,
        )

    def _remove(self, source_id: str) -> None:
        self._intervals.pop(source_id, None)
        with suppress(JobLookupError):
            self.scheduler.remove_job(source_id)

    def _job(self, source_id: str) -> None:
        self._tracked(lambda: self._poll(source_id))()

    def _poll(self, source_id: str) -> None:
        try:
            when = self._run_poll(source_id)
        except Exception:
            log.exception("source %s: poll crashed", source_id)
            return
        if when is not None and source_id in self._intervals:
            with suppress(JobLookupError):  # removed while it was polling
                self.scheduler.modify_job(source_id, next_run_time=when)
