"""Several nodes, one PostgreSQL: the polls shared out through procrastinate jobs.

`aggregator run` against a PostgreSQL store runs this instead of the APScheduler
scheduler (the same interface to the daemon). Each enabled source has one chain of
poll jobs in procrastinate's tables:
- a job polls its source on whichever node fetches it first (LISTEN/NOTIFY), under a
  lock named after the source, so two nodes never poll it at once;
- it defers the next poll with schedule_at at the time pacing.py decided (backoff,
  Retry-After, Cache-Control: the same pure functions as on one machine), under a
  queueing lock named after the source, so a source never has two pending polls;
- a node whose heartbeat stops (SIGKILL, a lost machine) is declared dead after
  STALLED_AFTER seconds by any other node, which puts its running polls back in the
  queue: they are polled again within RECOVERY_BOUND seconds of the kill;
- the per-host politeness limit holds across the cluster: a fetch first takes one of
  per_host_limit PostgreSQL advisory locks for its host (released by PostgreSQL if the
  node dies);
- nodes agree on the config through the database: cluster_config holds the digest of
  the accepted file. The first node, or a node whose file changes while it runs
  (an operator's edit, pushed to every node), makes its file the accepted one. A node
  whose file differs takes no polls and says so in /healthz, /status and
  `aggregator status`, instead of fighting over the sources.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from aggregator.config.loader import Source
from aggregator.errors import StoreError
from aggregator.run.pacing import first_poll_at
from aggregator.serve.status import ClusterReport, NodeReport
from aggregator.store import open_cluster
from aggregator.store.cluster import AcceptedConfig, ClusterState, NodeRecord

# procrastinate is imported by ClusterScheduler, not here: a node on SQLite, and
# `aggregator status` listing a cluster's nodes, never load it.
if TYPE_CHECKING:
    from procrastinate.jobs import Job
    from procrastinate.worker import Worker

log = logging.getLogger("aggregator.cluster")

T = TypeVar("T")

POLL_TASK = "aggregator.poll"
QUEUE = "polls"
HEARTBEAT = 2.0  # seconds between a node's heartbeats (procrastinate's and ours)
STALLED_AFTER = 10.0  # a node silent this long is dead: its running polls are run again
RECOVERY_INTERVAL = 2.0  # how often every node looks for dead nodes' polls
FETCH_INTERVAL = 1.0  # a worker also looks for due jobs this often (besides NOTIFY)
# A killed node's polls are back in the queue within STALLED_AFTER + HEARTBEAT +
# RECOVERY_INTERVAL seconds and started within FETCH_INTERVAL more.
RECOVERY_BOUND = STALLED_AFTER + HEARTBEAT + RECOVERY_INTERVAL + FETCH_INTERVAL
SLOT_WAIT = 0.2  # seconds between tries for a free per-host slot
DEFER_BATCH = 500  # first polls queued in one statement
HEAL_INTERVAL = 60.0  # how often a node looks for sources without a pending poll


def config_digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()[:16]


def node_name(output_dir: str) -> str:
    """A node's stable name: its machine and its output folder (what it publishes)."""
    return f"{socket.gethostname()}:{output_dir}"


@dataclass(frozen=True)
class NodeView:
    """A node as `aggregator status` and /status show it."""

    record: NodeRecord
    alive: bool
    agrees: bool  # its config is the accepted one

    @property
    def state(self) -> str:
        if self.alive:
            return "alive"
        return "stopped" if self.record.stopped_at else "dead"


@dataclass(frozen=True)
class Agreement:
    """This node's config against the cluster's accepted one."""

    agrees: bool
    version: int
    accepted_by: str

    @classmethod
    def of(cls, accepted: AcceptedConfig, digest: str) -> Agreement:
        return cls(accepted.digest == digest, accepted.version, accepted.accepted_by)

    def problem(self) -> str:
        if self.agrees:
            return ""
        if self.version == 0:  # a node starting: not compared yet, not polling yet
            return "config not yet compared with the cluster's accepted one"
        return (
            f"config differs from the cluster's accepted version {self.version} "
            f"(from {self.accepted_by}): this node takes no polls until its file matches"
        )


class ClusterScheduler:
    """PollScheduler's interface over procrastinate (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        run_poll: Callable[[str], datetime | None],
        *,
        node: str,
        digest: str,
        workers: int = 4,
        per_host_limit: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
        heal_interval: float = HEAL_INTERVAL,
    ) -> None:
        self.url = url
        self._heal_interval = heal_interval
        self.node = node
        self.digest = digest
        self._run_poll = run_poll
        self._clock = clock
        self._rand = rand
        self._workers = workers
        self._per_host = max(1, per_host_limit)
        self._sources: dict[str, Source] = {}
        self._in_flight = 0
        self._counter = threading.Lock()
        self._stopping = threading.Event()
        self._started_at = clock()
        self.agreement = Agreement(False, 0, "")  # until start() compares
        self._stored_next: Mapping[str, datetime | None] = {}
        self._synced = threading.Event()  # the first sync() gave this node its sources
        import procrastinate

        self.state: ClusterState = open_cluster(url)
        self.app = procrastinate.App(connector=self.state.job_connector())
        self._task = self.app.task(name=POLL_TASK, queue=QUEUE)(self._poll_job)
        self._loop = asyncio.new_event_loop()
        # Polls run on threads of their own, `workers` of them: asyncio's default pool
        # (cpu_count + 4 threads) would cap the polls at once below `workers` and keep
        # the heartbeats waiting behind slow polls.
        self._poll_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="poll"
        )
        self._thread = threading.Thread(target=self._loop.run_forever, name="cluster", daemon=True)
        self._worker: Worker | None = None
        self._worker_run: concurrent.futures.Future[Any] | None = None
        self._side: list[concurrent.futures.Future[Any]] = []
        self._housekeeping: list[threading.Thread] = []

    # --- the daemon's interface ---

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        self._thread.start()
        self._call(self._open())
        self.state.ensure_job_schema(self.app.schema_manager.get_schema())
        self._accept_config(initial=True)
        self._side = [
            asyncio.run_coroutine_threadsafe(self._heartbeats(), self._loop),
            asyncio.run_coroutine_threadsafe(self._recover(), self._loop),
            asyncio.run_coroutine_threadsafe(self._heal(), self._loop),
        ]
        # The worker starts at the first sync(): a poll taken before this node knows
        # its sources would end that source's chain of polls.

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop taking polls; let running ones finish (bounded). Polls still running
        after the bound are left to the other nodes' recovery."""
        self._stopping.set()
        idle = self._stop_worker(timeout if wait else 0)
        for future in self._side:
            future.cancel()
        try:
            self.state.mark_stopped(self.node, self._clock())
            self._call(self.app.close_async(), timeout=5)
        except Exception:  # the database may be gone: nothing more to tell it
            log.debug("closing the job engine failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._poll_threads.shutdown(wait=False)  # polls still running: see above
        self.state.close()
        return idle

    def sync(self, sources: Iterable[Source], stored_next: Mapping[str, datetime | None]) -> None:
        """The config (re)loaded: accept it if it changed here, then make sure every
        enabled source has a pending poll (a removed one's chain ends at its next job)."""
        self._sources = {s.id: s for s in sources if s.enabled}
        self._stored_next = stored_next
        self._synced.set()
        if self._thread.is_alive():
            self._accept_config(initial=False)
            self._steer_worker()
            if self.agreement.agrees:
                # No time bound: with tens of thousands of sources and several nodes
                # starting at once this takes minutes, and each step fails on its own.
                self._call(self._reconcile(stored_next), timeout=None)

    def add_housekeeping(
        self, name: str, func: Callable[[], object], interval: float, first: datetime
    ) -> None:
        """A periodic job (retention) on this node; running it on every node is harmless
        (each run is one transaction that finds nothing left to do after the first)."""

        def loop() -> None:
            delay = max(0.0, (first - datetime.now(UTC)).total_seconds())
            while not self._stopping.wait(delay):
                try:
                    func()
                except Exception:
                    log.exception("%s failed", name)
                delay = interval

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._housekeeping.append(thread)

    @property
    def polls_in_flight(self) -> int:
        return self._in_flight

    # --- the job ---

    async def _poll_job(self, source_id: str) -> None:
        """Poll one source (on a thread: fetching and storing block), then defer its
        next poll; a source no longer enabled here ends its chain."""
        with self._counter:
            self._in_flight += 1
        try:
            when = await asyncio.get_running_loop().run_in_executor(
                self._poll_threads, self._poll_politely, source_id
            )
        finally:
            with self._counter:
                self._in_flight -= 1
        source = self._sources.get(source_id)
        if source is None:
            log.info("source %s: no longer enabled; its polls end", source_id)
            return
        if when is None:  # held (410, stopping): look again one interval later
            when = self._clock() + timedelta(seconds=source.interval)
        await self._defer(source_id, when)

    async def _defer(self, source_id: str, when: datetime) -> None:
        from procrastinate import exceptions as job_errors

        with contextlib.suppress(job_errors.AlreadyEnqueued):  # its next poll is pending
            await self._task.configure(
                lock=source_id, queueing_lock=source_id, schedule_at=when
            ).defer_async(source_id=source_id)

    def _poll_politely(self, source_id: str) -> datetime | None:
        """run_poll, holding one of the cluster's per_host_limit slots of its host."""
        source = self._sources.get(source_id)
        host = (urlsplit(source.url).hostname or "") if source else ""
        if not host:
            return self._run_poll(source_id)
        slot = self._take_slot(host)
        try:
            return self._run_poll(source_id)
        finally:
            if slot is not None:
                self._give_slot(host, slot)

    def _take_slot(self, host: str) -> int | None:
        """One of the host's per_host_limit slots in the cluster, tried in random order
        until one is free (None once stopping)."""
        while not self._stopping.is_set():
            for slot in random.sample(range(self._per_host), self._per_host):
                if self.state.try_host_slot(host, slot):
                    return slot
            time.sleep(SLOT_WAIT)
        return None

    def _give_slot(self, host: str, slot: int) -> None:
        self.state.release_host_slot(host, slot)

    # --- the worker, started while this node agrees with the cluster's config ---

    def _steer_worker(self) -> None:
        if not self._synced.is_set():
            return
        if self.agreement.agrees and not self._stopping.is_set():
            if self._worker_run is None or self._worker_run.done():
                from procrastinate.worker import Worker

                self._worker = Worker(
                    self.app,
                    queues=[QUEUE],
                    name=self.node,
                    concurrency=self._workers,
                    install_signal_handlers=False,
                    update_heartbeat_interval=HEARTBEAT,
                    stalled_worker_timeout=STALLED_AFTER,
                    fetch_job_polling_interval=FETCH_INTERVAL,
                    delete_jobs="successful",
                )
                self._worker_run = asyncio.run_coroutine_threadsafe(
                    self._worker.run(),  # type: ignore[no-untyped-call]
                    self._loop,
                )
                log.info("taking polls (config version %d)", self.agreement.version)
        elif self._worker_run is not None and not self._worker_run.done():
            log.warning("%s", self.agreement.problem())
            self._stop_worker(None)

    def _stop_worker(self, timeout: float | None) -> bool:
        if self._worker is None or self._worker_run is None:
            return True
        self._worker.stop()  # type: ignore[no-untyped-call]
        try:
            self._worker_run.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return False
        except Exception:
            log.debug("the worker ended with an error", exc_info=True)
        return True

    # --- the database side ---

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> None:
        await self.app.open_async()

    def _accept_config(self, *, initial: bool) -> None:
        """Make this node's config the accepted one when there is none yet, or when it
        changed here since the last look (not at start: a node started with an old
        file follows the cluster instead of overriding it); then compare."""
        changed_here = not initial and self.digest != getattr(self, "_last_digest", self.digest)
        self._last_digest = self.digest
        accepted = self.state.accept_config(
            self.digest, self.node, self._clock(), replace=changed_here
        )
        if accepted.accepted_by == self.node and accepted.digest == self.digest:
            log.info("config version %d accepted from this node", accepted.version)
        self.agreement = Agreement.of(accepted, self.digest)

    def report(self) -> ClusterReport:
        """The cluster's nodes as /status shows them, with this node's disagreement."""
        accepted = self.state.accepted_config()
        views = node_views(self.state.nodes(), accepted, self._clock())
        return cluster_report(accepted, views, self.agreement.problem())

    def refresh_agreement(self) -> None:
        accepted = self.state.accepted_config()
        if accepted is not None:
            self.agreement = Agreement.of(accepted, self.digest)

    async def _reconcile(self, stored_next: Mapping[str, datetime | None]) -> None:
        """A pending poll for every enabled source that has none (a new source, a
        chain ended by an error), at the time the pacing module gives a first poll."""
        pending = await asyncio.to_thread(self.state.pending_jobs, POLL_TASK)
        now = self._clock()
        missing = [s for s in self._sources.values() if s.id not in pending]
        due = [s for s in missing if not ((t := stored_next.get(s.id)) and t > now)]
        first = [
            (s.id, first_poll_at(now, stored_next.get(s.id), s.interval, self._rand(), len(due)))
            for s in missing
        ]
        for start in range(0, len(first), DEFER_BATCH):
            await self._defer_many(first[start : start + DEFER_BATCH])
        if missing:
            log.info("queued the first poll of %d source(s)", len(missing))
            await asyncio.to_thread(self.state.refresh_job_statistics)

    async def _defer_many(self, polls: list[tuple[str, datetime]]) -> None:
        """These polls in one statement; one by one where another node queued one of
        them meanwhile (a batch with a taken queueing lock is refused whole)."""
        from procrastinate import exceptions as job_errors

        jobs = [
            self._task.configure(
                lock=source_id, queueing_lock=source_id, schedule_at=when
            ).make_new_job(source_id=source_id)
            for source_id, when in polls
        ]
        try:
            await self.app.job_manager.batch_defer_jobs_async(jobs)
        except job_errors.AlreadyEnqueued:
            for source_id, when in polls:
                await self._defer(source_id, when)

    async def _heal(self) -> None:
        """Every heal_interval seconds, a pending poll for any enabled source left
        without one (its chain ended by a failure between a poll and the next one's
        deferral): no source stays unpolled until the next config reload."""
        while True:
            await asyncio.sleep(self._heal_interval)
            if not (self._synced.is_set() and self.agreement.agrees) or self._stopping.is_set():
                continue
            try:
                await self._reconcile(self._stored_next)
            except Exception:
                log.warning("queueing the polls of sources without one failed", exc_info=True)

    async def _heartbeats(self) -> None:
        """This node's row in cluster_nodes, every HEARTBEAT seconds; and a look at the
        accepted config (another node may have changed it)."""
        while True:
            try:
                beat = NodeRecord(
                    self.node,
                    socket.gethostname(),
                    os.getpid(),
                    self._started_at,
                    self._clock(),
                    self._in_flight,
                    self.digest,
                )
                await asyncio.to_thread(self.state.heartbeat, beat)
                before = self.agreement.agrees
                await asyncio.to_thread(self.refresh_agreement)
                if self.agreement.agrees != before:
                    await asyncio.to_thread(self._steer_worker)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT)

    async def _recover(self) -> None:
        """Put the running polls of dead nodes back in the queue, every
        RECOVERY_INTERVAL seconds (every node does; the first one to see them wins)."""
        manager = self.app.job_manager
        while True:
            try:
                await manager.prune_stalled_workers(STALLED_AFTER)
                for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER):
                    try:  # a failure is this job's alone: the others are still taken over
                        await self._take_over(job)
                    except Exception:
                        log.warning(
                            "taking over poll %s of a dead node failed",
                            job.queueing_lock,
                            exc_info=True,
                        )
            except Exception:
                log.warning("recovering stalled polls failed", exc_info=True)
            await asyncio.sleep(RECOVERY_INTERVAL)

    async def _take_over(self, job: Job) -> None:
        """A dead node's poll back in the queue; or, where its source's next poll is
        queued already (the poll was done, only its job was not closed), closed."""
        import procrastinate
        from procrastinate import exceptions as job_errors

        manager = self.app.job_manager
        assert job.id is not None
        try:
            await manager.retry_job(job)
            log.warning("poll %s of a dead node queued again", job.queueing_lock)
        # retry_job raises UniqueViolation for a taken queueing lock, not AlreadyEnqueued.
        except (job_errors.UniqueViolation, job_errors.AlreadyEnqueued):
            await manager.finish_job_by_id_async(
                job.id, status=procrastinate.jobs.Status.FAILED, delete_job=True
            )


def node_views(
    nodes: Iterable[NodeRecord], accepted: AcceptedConfig | None, now: datetime
) -> list[NodeView]:
    """Each node with whether it is alive (seen within STALLED_AFTER seconds and not
    stopped) and whether its config is the accepted one."""
    return [
        NodeView(
            node,
            node.stopped_at is None and (now - node.last_seen).total_seconds() < STALLED_AFTER,
            accepted is not None and node.config_digest == accepted.digest,
        )
        for node in nodes
    ]


def cluster_nodes(database: str, now: datetime) -> tuple[AcceptedConfig | None, list[NodeView]]:
    """The cluster's accepted config and its nodes, read from its database; (None, [])
    where it cannot be read."""
    try:
        with open_cluster(database) as state:
            accepted = state.accepted_config()
            return accepted, node_views(state.nodes(), accepted, now)
    except StoreError:
        log.warning("cannot read the cluster's nodes", exc_info=True)
        return None, []


def cluster_report(
    accepted: AcceptedConfig | None, views: Iterable[NodeView], problem: str = ""
) -> ClusterReport:
    """The nodes as the status report shows them; `problem`: this node's own."""
    return ClusterReport(
        accepted.version if accepted else None,
        accepted.accepted_by if accepted else "",
        tuple(
            NodeReport(
                view.record.id,
                view.state,
                view.record.last_seen,
                view.record.polls_in_flight,
                view.agrees,
            )
            for view in views
        ),
        problem,
    )
