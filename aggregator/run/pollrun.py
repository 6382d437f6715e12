"""Poll many sources once, a bounded number at a time: the `aggregator poll` command.

The daemon has its scheduler; a one-off run keeps settings.workers fetches in
flight from one thread (Fetcher.fetch_many), so a hundred sources do not take a
hundred fetch times, and reads and stores each answer as it comes. Parsing is CPU
work that threads cannot spread over cores (the GIL), so a large first run also
splits the sources over worker processes, each with its own fetches in flight,
database connection and fetcher (the per-host limit shared out between them). Each
worker fetches, parses and stores its share, the workers taking SQLite's write lock
in turn; the calling process hears each finished poll. On a terminal, a long run
shows a progress bar instead of scrolling lines (drawn by the CLI from each finished
poll).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import pickle
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from aggregator.config.loader import Source
from aggregator.errors import AggregatorError, StoreError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import FetchRequest, Limits
from aggregator.fetch.urls import origin_of
from aggregator.machine import usable_cores
from aggregator.parse.kinds import load_readers
from aggregator.parse.limits import ParseLimits
from aggregator.run.poll import (
    Clock,
    PollOutcome,
    PollStart,
    ReadyToStore,
    after_fetch,
    begin_poll,
    full_text_for,
    store_parsed,
    utc_now,
    with_full_text,
)
from aggregator.store import open_store
from aggregator.store.interface import Storage
from aggregator.store.records import PollRecord, SourceState

T = TypeVar("T")

# Below this many sources a run is over before worker processes would have started.
PROCESS_MIN_SOURCES = 100
MAX_PROCESSES = 4
# A worker process's first-generation collection threshold (Python's default: 700).
WORKER_GC_THRESHOLD = 10_000
# Polls whose state is committed together (see PollRecords).
RECORD_BATCH = 64
# Parsed feeds, already waiting, whose entries are committed together: each commit
# rewrites the index pages its entries touched, and a feed's few entries touch
# nearly as many as several feeds' (see _store_all).
STORE_BATCH = 8
# Parsed feeds a worker process holds before it waits for the write lock: while
# another process writes, it parses on instead (see _time_to_store). Also bounded by
# the characters of their entries' text, so that huge feeds are not held by the dozen.
UNSTORED_MAX = 4 * STORE_BATCH
UNSTORED_TEXT_MAX = 8 * 1024 * 1024

# What a worker process sends the calling process: a finished poll, or the exception
# that stopped the worker.
Answer = PollOutcome | BaseException


class PollRecords:
    """Poll-state writes gathered into one write transaction per batch, instead of one
    per poll: a poll that finds nothing new (a 304) writes nothing else, and its own
    transaction would cost more than its fetch. An unwritten batch lost to a kill only
    forgets that those polls happened: the sources are polled again, and entries are
    stored by transactions of their own, never held here."""

    def __init__(self, store: Storage, size: int = RECORD_BATCH) -> None:
        self.store = store
        self.size = size
        self._pending: list[tuple[str, PollRecord]] = []

    def __call__(self, source_id: str, record: PollRecord) -> None:
        self._pending.append((source_id, record))
        if len(self._pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self.store.record_polls(batch)


def send(results: Any, answer: object) -> None:
    """Put an answer in the results queue. It is pickled here, so that one pickle
    refuses (an exception holding a lambda, say) still arrives, as its text."""
    try:
        blob = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        text = f"{type(answer).__name__}: {str(answer)[:500]} (could not be sent: {exc})"
        blob = pickle.dumps(AggregatorError(text))
    results.put(blob)


def receive(results: Any, timeout: float | None) -> Any:
    """The next answer (queue.Empty after timeout; None waits, 0 does not)."""
    return pickle.loads(results.get(block=timeout != 0, timeout=timeout or None))


def process_count(to_parse: int, cpus: int | None) -> int:
    """How many processes a run should use, given how many of its sources will
    likely be parsed: one per core when that is many, else one (the caller alone).

    Parsing is what spreads over cores. A source fetched before mostly answers 304 or
    the same bytes, which one process handles faster than several: every write by one
    process makes the others' SQLite caches stale."""
    if to_parse < PROCESS_MIN_SOURCES or not cpus or cpus < 2:
        return 1
    return min(cpus, MAX_PROCESSES)


def processes_for(store: Storage, sources: Sequence[Source], cpus: int | None) -> int:
    """process_count for these sources: those never parsed before will be."""
    return process_count(store.never_parsed([s.id for s in sources]), cpus)


def start_method(threads: int) -> str:
    """fork starts a worker at once, but copies the locks other threads may hold at
    that moment; with other threads alive, spawn (a fresh interpreter) is the safe way."""
    if threads == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def share_out(total: int, parts: int) -> int:
    """Each of `parts` processes' share of a limit, never below one."""
    return max(1, total // parts)


def poll_many(
    sources: Sequence[Source],
    store: Storage,
    fetcher: Fetcher,
    workers: int,
    on_done: Callable[[PollOutcome], None] = lambda outcome: None,
    limits: ParseLimits | None = None,
    clock: Clock = utc_now,
    processes: int = 1,
) -> list[PollOutcome]:
    """Poll each source once, at most `workers` fetches at a time.

    The calling thread does it all: fetch_many keeps the fetches in flight while this
    thread reads and stores what each brought. on_done is called as each poll
    finishes; the result is in the order of `sources`. A source's own failure never
    raises, so one bad source stops nothing. With processes > 1 the polls run in that
    many worker processes (see process_count); the clock must then be picklable.
    """
    if not sources:
        return []
    if processes > 1:
        return _poll_in_processes(
            sources, store, fetcher, workers, on_done, limits, clock, processes
        )
    states = store.source_states([source.id for source in sources])
    records = PollRecords(store)
    # Begun as fetch_many takes them, so each poll's clock starts with its fetch.
    starts = (begin_poll(source, states[source.id], clock()) for source in sources)
    by_id: dict[str, PollOutcome] = {}
    # Polls whose articles are still to fetch: once fetch_many is done, as this thread
    # drives its transfers and an article's host may be one of theirs.
    waiting: list[ReadyToStore] = []
    try:
        fetches = fetcher.fetch_many(((start, start.request) for start in starts), workers)
        with contextlib.closing(fetches):
            for start, fetched in fetches:
                step = after_fetch(
                    start, fetched, store, record=records, clock=clock, limits=limits
                )
                if isinstance(step, ReadyToStore) and step.source.full_text.enabled:
                    waiting.append(step)
                    continue
                outcome = (
                    step if isinstance(step, PollOutcome) else store_parsed(step, store, records)
                )
                by_id[outcome.source_id] = outcome
                on_done(outcome)
        for parsed in _with_articles(waiting, fetcher, store, limits):
            outcome = store_parsed(parsed, store, records)
            by_id[outcome.source_id] = outcome
            on_done(outcome)
    finally:
        records.flush()
    return [by_id[source.id] for source in sources]


def _with_articles(
    waiting: Sequence[ReadyToStore], fetcher: Fetcher, store: Storage, limits: ParseLimits | None
) -> Iterator[ReadyToStore]:
    """The parsed polls of sources with full_text, each with its entries' articles."""
    if not waiting:
        return  # nothing to load full text for
    full_text = full_text_for(fetcher, store, limits)
    for parsed in waiting:
        yield with_full_text(parsed, full_text)


def deal_out(jobs: Sequence[T], parts: int, host: Callable[[T], str]) -> list[list[T]]:
    """The jobs dealt out to `parts` workers, each share in the jobs' order: as many
    each (give or take one), and each host's jobs as evenly. A worker has its share of
    the per-host limit: a host whose sources all went to one worker would be polled at
    a fraction of the pace the limit allows."""
    by_host = sorted(range(len(jobs)), key=lambda index: host(jobs[index]))
    part_of = [0] * len(jobs)
    for turn, index in enumerate(by_host):
        part_of[index] = turn % parts
    return [
        [job for job, part in zip(jobs, part_of, strict=True) if part == p] for p in range(parts)
    ]


def _poll_in_processes(
    sources: Sequence[Source],
    store: Storage,
    fetcher: Fetcher,
    workers: int,
    on_done: Callable[[PollOutcome], None],
    limits: ParseLimits | None,
    clock: Clock,
    processes: int,
) -> list[PollOutcome]:
    load_readers(source.kind for source in sources)  # once here, not in each process
    context: Any = multiprocessing.get_context(start_method(threading.active_count()))
    results: Any = context.Queue()
    # Read here in one query, not by each worker in one query per source.
    states = store.source_states([source.id for source in sources])
    jobs = [(source, states[source.id]) for source in sources]
    dealt = deal_out(jobs, processes, lambda job: origin_of(job[0].url)[1])
    own = fetcher.limits
    shared = replace(
        own,
        per_host=share_out(own.per_host, processes),
        bytes_in_flight=share_out(own.bytes_in_flight, processes),
    )
    children = [
        context.Process(
            target=_process_main,
            args=(
                store.database,
                shared,
                fetcher.user_agent,
                limits,
                clock,
                share_out(workers, processes),
                share,
                results,
            ),
            daemon=True,
        )
        for share in dealt
    ]
    for child in children:
        child.start()
    by_id: dict[str, PollOutcome] = {}
    answers = 0  # a source named twice is answered twice
    try:
        with store.bulk_writes():  # the workers' writes come back to back
            while answers < len(sources):
                try:
                    answer: Answer = receive(results, 1.0)
                except queue.Empty:
                    if not any(child.is_alive() for child in children):
                        raise AggregatorError("the poll worker processes stopped early") from None
                    continue
                if isinstance(answer, BaseException):
                    raise answer  # the worker stored what it had parsed before it
                answers += 1
                by_id[answer.source_id] = answer
                on_done(answer)
    finally:
        _end(children, (results,), finished=answers == len(sources))
    return [by_id[source.id] for source in sources]


def _store_all(
    parsed: Sequence[ReadyToStore], store: Storage, records: PollRecords
) -> list[PollOutcome]:
    """Each parsed feed stored by its own transaction, all of them committed together
    (see STORE_BATCH); the polls' states are recorded once their entries are
    committed. If any feed fails to store, or the batch cannot commit, nothing of it
    stays and each feed is stored alone, to succeed or fail alone."""
    if len(parsed) > 1:
        held: list[tuple[str, PollRecord]] = []
        try:
            with store.batch():
                stored = [store_parsed(p, store, lambda *poll: held.append(poll)) for p in parsed]
        except StoreError:  # BatchFailed, or the commit failed
            pass  # nothing of it was committed: one by one below
        else:
            for poll in held:
                records(*poll)
            return stored
    return [store_parsed(p, store, records) for p in parsed]


def _end(children: Sequence[Any], channels: Sequence[Any], finished: bool) -> None:
    """Workers and queues after a run. A finished run lets them end on their own and
    waits for the queues' feeder threads (a later run may fork); a failed one stops
    the workers at once (they may be blocked on a full queue nobody reads)."""
    for child in children:
        if finished:
            child.join(timeout=30)
        if child.is_alive():
            child.terminate()
            child.join()
    for channel in channels:
        channel.close()
        if finished:
            channel.join_thread()
        else:
            channel.cancel_join_thread()


def _process_main(
    database: Path,
    fetch_limits: Limits,
    user_agent: str,
    limits: ParseLimits | None,
    clock: Clock,
    in_flight: int,
    jobs: Sequence[tuple[Source, SourceState]],
    results: Any,
) -> None:
    """A worker process: polls its share of the sources (each with its stored state),
    fetching up to `in_flight` at a time from one thread, parsing what they bring and
    storing it; sends each finished outcome through `results`, or the exception that
    stopped it.

    The shares are fixed (deal_out) rather than taken from a queue: a worker takes a
    new source as a fetch ends, not as it finishes parsing and storing, so from a
    queue one worker took far more than the other, which then stood idle at the end."""
    # Parsing makes and drops many small objects, nearly all freed by reference
    # counting: collect the young generation less often, and leave what a fork
    # inherited out of collections (scanning it would copy the parent's pages).
    gc.freeze()
    gc.set_threshold(WORKER_GC_THRESHOLD, 20, 20)
    with open_store(database) as store, Fetcher(fetch_limits, user_agent) as fetcher:
        records = PollRecords(store)
        starts = _starts(jobs, clock)
        unstored = Unstored(store, records, results)
        waiting: list[ReadyToStore] = []  # stored once their articles are in (see poll_many)
        try:
            with contextlib.closing(fetcher.fetch_many(starts, in_flight)) as fetches:
                for start, fetched in fetches:
                    answer = after_fetch(
                        start, fetched, store, record=records, clock=clock, limits=limits
                    )
                    if isinstance(answer, ReadyToStore) and answer.source.full_text.enabled:
                        waiting.append(answer)
                    elif isinstance(answer, ReadyToStore):
                        unstored.add(answer)
                    else:
                        send(results, answer)
            for parsed in _with_articles(waiting, fetcher, store, limits):
                unstored.add(parsed)
        except BaseException as exc:  # a storage fault, say: the caller re-raises it
            unstored.store()
            send(results, exc)
        else:
            unstored.store()
        records.flush()


class Unstored:
    """A worker's parsed feeds not stored yet: each stored outcome is sent through
    `results` (see _time_to_store for when)."""

    def __init__(self, store: Storage, records: PollRecords, results: Any) -> None:
        self.writer = store
        self.records = records
        self.results = results
        self.feeds: list[ReadyToStore] = []
        self.text = 0  # the characters of their entries' text

    def add(self, parsed: ReadyToStore) -> None:
        self.feeds.append(parsed)
        self.text += sum(len(e.content) + len(e.summary) for e in parsed.entries)
        if _time_to_store(len(self.feeds), self.text, self.writer):
            self.store()

    def store(self) -> None:
        """Store them all, STORE_BATCH to a transaction (see _store_all)."""
        feeds, self.feeds, self.text = self.feeds, [], 0
        for first in range(0, len(feeds), STORE_BATCH):
            batch = feeds[first : first + STORE_BATCH]
            for outcome in _store_all(batch, self.writer, self.records):
                send(self.results, outcome)


def _starts(
    jobs: Sequence[tuple[Source, SourceState]], clock: Clock
) -> Iterator[tuple[PollStart, FetchRequest]]:
    """Each job's poll begun as the fetcher takes it, so its clock starts with its fetch."""
    for source, state in jobs:
        start = begin_poll(source, state, clock())
        yield start, start.request


def _time_to_store(feeds: int, text: int, store: Storage) -> bool:
    """Whether a worker should store the feeds it has parsed (`text`: the characters
    of their entries' text): a batch of them while no other process is writing, or,
    once it holds UNSTORED_MAX feeds or UNSTORED_TEXT_MAX characters, whether one is
    or not."""
    if feeds >= UNSTORED_MAX or text >= UNSTORED_TEXT_MAX:
        return True
    return feeds >= STORE_BATCH and store.can_write_now()


def poll_run(
    sources: Sequence[Source],
    store: Storage,
    fetcher: Fetcher,
    workers: int,
    on_done: Callable[[PollOutcome], None] = lambda outcome: None,
    limits: ParseLimits | None = None,
) -> list[PollOutcome]:
    """poll_many in as many processes as these sources call for (processes_for):
    the `aggregator poll` command. on_done hears of each poll as it finishes."""
    processes = processes_for(store, sources, usable_cores())
    return poll_many(sources, store, fetcher, workers, on_done, limits, processes=processes)
