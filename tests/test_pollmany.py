"""poll_many (a thread pool over poll_source): the same store as polling one by one."""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import Config, Source, load_config
from aggregator.errors import AggregatorError, BatchFailed
from aggregator.fetch.fetcher import Fetcher
from aggregator.parse import fast as fastparse
from aggregator.run.poll import after_fetch, begin_poll, poll_source
from aggregator.run.pollrun import (
    MAX_PROCESSES,
    PROCESS_MIN_SOURCES,
    STORE_BATCH,
    UNSTORED_MAX,
    UNSTORED_TEXT_MAX,
    PollRecords,
    _store_all,
    _time_to_store,
    deal_out,
    poll_many,
    process_count,
    processes_for,
    receive,
    send,
    share_out,
    start_method,
)
from aggregator.store.records import PollRecord
from aggregator.store.sqlite import SqliteStore
from bench.corpus import Corpus
from tests.conftest import Clock
from tests.feeds import Item, atom, rss
from tests.feedserver import FeedServer

RULE = {"param": "infoCode"}


def corpus_config(server: FeedServer, write_config: Any, corpus: Corpus) -> Config:
    sources = []
    for feed in corpus.feeds:
        url = server.set(feed.path, corpus.render(feed), content_type=feed.content_type)
        sources.append(
            {
                "id": f"s{feed.index}",
                "name": f"第{feed.index}版",
                "url": url,
                "category": "三秦都市报",
                "tags": ["三秦都市报新闻"],
                "share_code": RULE,
            }
        )
    sources.append(
        {"id": "broken", "name": "坏", "url": server.url("/missing.xml"), "category": "x"}
    )
    return load_config(write_config(sources))


def table(path: Path) -> list[tuple[Any, ...]]:
    """The store's content; which duplicate's link an entry keeps depends on which
    source was polled first, so the link is left out."""
    with SqliteStore(path) as store:
        rows = store.db.execute(
            """SELECT e.code, e.title, e.published, e.updated, e.content, e.summary,
                 e.categories, es.source_id, es.guid, es.entry_hash
               FROM entries e JOIN entry_sources es ON es.code = e.code
               ORDER BY e.code, es.source_id"""
        ).fetchall()
    return [tuple(r) for r in rows]


STATE_COLUMNS = """id, etag, last_modified, body_hash, last_result, last_http_status,
    error_count, last_error, poll_hints, last_poll_at"""


def poll_states(path: Path) -> list[tuple[Any, ...]]:
    """What the store keeps of each source's last poll (next_poll_at has random jitter)."""
    with SqliteStore(path) as store:
        rows = store.db.execute(f"SELECT {STATE_COLUMNS} FROM sources ORDER BY id").fetchall()
    return [tuple(r) for r in rows]


def poll_one_by_one(config: Config, path: Path, clock: Clock) -> Path:
    """The reference store: every source polled in turn, in this thread."""
    with SqliteStore(path) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        for source in config.sources:
            poll_source(source, store, fetcher, clock=clock)
    return path


def test_poll_many_stores_what_polling_one_by_one_stores(
    server: FeedServer, write_config: Any, clock: Clock, tmp_path: Path
) -> None:
    corpus = Corpus(12, 6, seed=11, duplicates=0.3)
    config = corpus_config(server, write_config, corpus)
    one_by_one = poll_one_by_one(config, tmp_path / "one.db", clock)
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcomes = poll_many(config.sources, store, fetcher, 6, clock=clock)
    assert [o.source_id for o in outcomes] == [s.id for s in config.sources]
    assert outcomes[-1].result == "error"  # a failing source stops nothing
    assert all(o.result == "ok" for o in outcomes[:-1])
    assert sum(o.added_source for o in outcomes) > 0  # the duplicates were recognised
    assert table(config.settings.database) == table(one_by_one)
    # Poll states are committed in batches, but every one of them is there at the end.
    assert poll_states(config.settings.database) == poll_states(one_by_one)


def test_poll_many_in_worker_processes_stores_the_same(
    server: FeedServer, write_config: Any, clock: Clock, tmp_path: Path
) -> None:
    """Two worker processes, each with its own threads, connection and fetcher."""
    corpus = Corpus(12, 6, seed=12, duplicates=0.3)
    config = corpus_config(server, write_config, corpus)
    one_by_one = poll_one_by_one(config, tmp_path / "one.db", clock)
    done: list[str] = []
    threads_before = threading.active_count()
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcomes = poll_many(
            config.sources,
            store,
            fetcher,
            4,
            lambda o: done.append(o.source_id),
            clock=clock,
            processes=2,
        )
    assert [o.source_id for o in outcomes] == [s.id for s in config.sources]
    assert sorted(done) == sorted(s.id for s in config.sources)  # each reported once
    # No thread is left behind (queue feeders), so the next large run may fork.
    assert threading.active_count() == threads_before
    assert outcomes[-1].result == "error"
    assert all(o.result == "ok" for o in outcomes[:-1])
    assert table(config.settings.database) == table(one_by_one)
    assert poll_states(config.settings.database) == poll_states(one_by_one)


def test_worker_processes_store_what_they_parse(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    """Each worker writes its own share's entries; the calling process writes none."""
    config = corpus_config(server, write_config, Corpus(6, 3, seed=13))
    statements: list[str] = []
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        store.db.conn.set_trace_callback(statements.append)
        outcomes = poll_many(config.sources, store, fetcher, 4, clock=clock, processes=2)
        store.db.conn.set_trace_callback(None)
        stored = store.db.execute("SELECT count(*) FROM entries").fetchone()[0]
    assert all(o.result == "ok" for o in outcomes[:-1])
    assert stored == sum(o.new for o in outcomes) > 0
    assert not [s for s in statements if "INSERT" in s or "BEGIN" in s]


def test_a_worker_stores_a_batch_when_the_lock_is_free_or_it_holds_too_many(
    tmp_path: Path,
) -> None:
    with SqliteStore(tmp_path / "a.db") as store, SqliteStore(tmp_path / "a.db") as other:
        assert not _time_to_store(STORE_BATCH - 1, 0, store)
        assert _time_to_store(STORE_BATCH, 0, store)
        assert _time_to_store(1, UNSTORED_TEXT_MAX, store)  # one huge feed goes alone
        with other.writing():  # another writer holds the lock
            assert not store.can_write_now()
            assert not _time_to_store(STORE_BATCH, 0, store)
            assert _time_to_store(UNSTORED_MAX, 0, store)
            assert _time_to_store(2, UNSTORED_TEXT_MAX, store)
        assert store.can_write_now()


def test_jobs_are_dealt_out_evenly_and_each_hosts_too() -> None:
    """With hosts taking turns in the list, every other job would give each worker
    only half the hosts; dealt by host, each gets half of every host's, in list order."""
    jobs = [f"h{i % 4}/{i}" for i in range(18)]  # 4 hosts, 4 or 5 jobs each
    shares = deal_out(jobs, 2, lambda job: job.split("/")[0])
    assert sorted(len(share) for share in shares) == [9, 9]
    assert sorted(job for share in shares for job in share) == sorted(jobs)
    for share in shares:
        assert share == sorted(share, key=jobs.index)  # the jobs' order kept
        per_host = [sum(job.startswith(f"h{h}/") for job in share) for h in range(4)]
        assert all(count in (2, 3) for count in per_host)
    assert deal_out(jobs, 1, lambda job: "") == [jobs]
    assert deal_out([], 3, lambda job: "") == [[], [], []]


def test_process_count_uses_the_cores_only_for_much_parsing() -> None:
    assert process_count(10, 8) == 1
    assert process_count(PROCESS_MIN_SOURCES, 1) == 1
    assert process_count(PROCESS_MIN_SOURCES, None) == 1
    assert process_count(PROCESS_MIN_SOURCES, 2) == 2
    assert process_count(5000, 64) == MAX_PROCESSES
    assert share_out(4, 2) == 2 and share_out(4, 3) == 1 and share_out(1, 4) == 1


def test_first_entry_per_code_still_wins_when_others_are_skipped(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    one = Item("NW9", "第一版本", guid="g1")
    two = Item("NW9", "第二版本", guid="g2")
    url = server.set("/a.xml", rss([one, two]))
    config = load_config(
        write_config([{"id": "a", "name": "a", "url": url, "category": "c", "share_code": RULE}])
    )
    source = config.sources[0]
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        assert poll_source(source, store, fetcher, clock=clock).new == 1
        server.set("/a.xml", rss([one, two, Item("NW10", "新", guid="g3")]))
        clock.advance(60)
        outcome = poll_source(source, store, fetcher, clock=clock)
        assert (outcome.new, outcome.updated) == (1, 0)
        assert store.articles(("all", ""), 5)[-1].title == "第一版本"
        # An edit of the first copy is still an update.
        server.set("/a.xml", rss([replace(one, title="第一版本（改）"), two]))
        clock.advance(60)
        assert poll_source(source, store, fetcher, clock=clock).updated == 1


def test_feeds_that_the_fast_path_declines_are_polled_too(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    body = rss([Item("NW1", "甲")]).replace(b"<rss", b"<!DOCTYPE rss>\n<rss", 1)
    assert fastparse.read(body, url="http://x/") is None
    url = server.set("/a.xml", body)
    url_b = server.set("/b.xml", atom([Item("NW2", "乙")]), content_type="application/atom+xml")
    config = load_config(
        write_config(
            [
                {"id": "a", "name": "a", "url": url, "category": "c", "share_code": RULE},
                {"id": "b", "name": "b", "url": url_b, "category": "c", "share_code": RULE},
            ]
        )
    )
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcomes = poll_many(config.sources, store, fetcher, 2, clock=clock)
        assert [(o.result, o.new) for o in outcomes] == [("ok", 1), ("ok", 1)]


def test_workers_fork_only_when_no_other_thread_could_hold_a_lock() -> None:
    assert start_method(1) == "fork"
    assert start_method(3) == "spawn"


def test_only_sources_never_parsed_count_towards_worker_processes(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    corpus = Corpus(3, 2, seed=5)
    config = corpus_config(server, write_config, corpus)
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        ids = [s.id for s in config.sources]
        assert store.never_parsed(ids) == 4
        poll_many(config.sources, store, fetcher, 2, clock=clock)
        assert store.never_parsed(ids) == 1  # the broken one
        assert store.never_parsed([*ids, "not-in-the-store"]) == 2
        assert processes_for(store, config.sources, 2) == 1


def test_poll_states_are_committed_a_batch_at_a_time(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store, SqliteStore(path) as other:
        records = PollRecords(store, size=3)
        for number in range(2):
            records(f"s{number}", PollRecord(last_result="not_modified", last_poll_at=clock()))
        assert other.source_rows() == []  # not committed yet
        records("s2", PollRecord(last_result="ok", etag='"e"'))
        assert [r["id"] for r in other.source_rows()] == ["s0", "s1", "s2"]
        assert other.source_state("s2").etag == '"e"'
        records("s3", PollRecord(last_result="error", error_count=1))
        records.flush()
        assert other.source_state("s3").error_count == 1
        records.flush()  # nothing left: no empty transaction
        assert len(other.source_rows()) == 4


def test_a_batch_of_poll_states_keeps_each_sources_last_poll(tmp_path: Path) -> None:
    """Polls that set the same columns are written by one statement; a source polled
    again later in the batch, with other columns, still ends with its last poll."""
    error = PollRecord(last_result="error", last_error="HTTP 503", error_count=1)
    ok = PollRecord(last_result="ok", etag='"v2"', error_count=0)
    with SqliteStore(tmp_path / "states.db") as store:
        store.record_polls([("a", error), ("b", ok), ("a", ok), ("c", ok), ("a", error)])
        assert store.source_state("a").error_count == 1
        assert [r["last_result"] for r in store.source_rows()] == ["error", "ok", "ok"]
        assert store.source_state("b").etag == store.source_state("c").etag == '"v2"'
        assert store.source_state("a").etag == '"v2"'  # set by its poll in between


def test_source_states_reads_many_as_source_state_reads_one(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = corpus_config(server, write_config, Corpus(4, 2, seed=3))
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        poll_many(config.sources, store, fetcher, 2, clock=clock)
        ids = [s.id for s in config.sources] + ["unknown"]
        states = store.source_states(ids)
        assert list(states) == ids
        assert all(states[i] == store.source_state(i) for i in ids)
        assert states["unknown"].etag is None and states["s0"].etag


class FailingClock(Clock):
    """Fails on its n-th reading: stands in for a fault outside any source's control."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.readings = 0
        self.fail_at = fail_at

    def __call__(self) -> Any:
        self.readings += 1
        if self.readings == self.fail_at:
            raise RuntimeError("the clock broke")
        return super().__call__()


def test_a_fault_outside_the_sources_stops_the_run_and_keeps_what_was_done(
    server: FeedServer, write_config: Any
) -> None:
    config = corpus_config(server, write_config, Corpus(6, 2, seed=4))
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        with pytest.raises(RuntimeError, match="the clock broke"):
            poll_many(config.sources, store, fetcher, 1, clock=FailingClock(fail_at=7))
        # The clock is read as each poll begins and as a parsed one is stored; with one
        # fetch in flight, the next begins while the one before is stored: s0, s1, s0
        # stored, s2, s1 stored, s3, then s2's storing fails. The first two polls were
        # done, and their states are stored although the run failed before a batch
        # was full.
        polled = [r["id"] for r in store.source_rows() if r["last_result"] == "ok"]
        assert polled == ["s0", "s1"]
        # The fetches under way were dropped and their host slots given back: the
        # fetcher still polls every source.
        again = poll_many(config.sources, store, fetcher, 1, clock=Clock())
        assert [o.source_id for o in again] == [s.id for s in config.sources]


def test_a_fault_in_a_worker_process_stops_the_run(server: FeedServer, write_config: Any) -> None:
    """The exception travels back to the caller; the workers are stopped, not waited for."""
    config = corpus_config(server, write_config, Corpus(8, 2, seed=6))
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        with pytest.raises(RuntimeError, match="the clock broke"):
            poll_many(config.sources, store, fetcher, 2, clock=FailingClock(fail_at=3), processes=2)


def test_a_source_named_twice_is_answered_twice(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = corpus_config(server, write_config, Corpus(2, 2, seed=8))
    twice = [config.sources[0], *config.sources]
    for processes in (1, 2):
        with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
            store.sync_sources(config.sources)
            outcomes = poll_many(twice, store, fetcher, 1, clock=clock, processes=processes)
        assert [o.source_id for o in outcomes] == [s.id for s in twice]


def test_a_batch_commits_its_transactions_together_or_none_of_them(tmp_path: Path) -> None:
    # poll_many stores the parsed feeds already waiting as one batch: one commit for
    # several feeds. If one of them fails, the batch leaves nothing, for each to be
    # stored alone (test_a_storage_fault_in_a_batch_fails_that_source_alone).
    with SqliteStore(tmp_path / "s.db") as store, SqliteStore(tmp_path / "s.db") as reader:

        def remove(code: str) -> None:
            with store.transaction() as db:
                db.execute("INSERT INTO tombstones (code, removed_at) VALUES (?, 'x')", [code])
                if code.startswith("bad"):
                    raise RuntimeError("a fault in the middle of one feed's transaction")

        def committed() -> list[str]:
            return [r[0] for r in reader.db.execute("SELECT code FROM tombstones ORDER BY code")]

        with store.batch():
            remove("a")
            remove("c")
            assert committed() == []  # nothing is visible before the batch commits
        assert committed() == ["a", "c"]
        with pytest.raises(BatchFailed), store.batch():
            remove("d")
            with pytest.raises(RuntimeError):
                remove("bad")  # its caller goes on, as store_parsed does
            remove("e")
        assert committed() == ["a", "c"]
        remove("f")  # a lone transaction commits at once, as before
        assert committed() == ["a", "c", "f"]


def parsed_waiting(store: SqliteStore, sources: list[Source], clock: Clock) -> list[Any]:
    """Each source fetched and parsed as a worker process does it, nothing stored yet."""
    waiting = []
    with Fetcher() as fetcher:
        for source in sources:
            start = begin_poll(source, store.source_state(source.id), clock())
            fetched = fetcher.fetch(start.request.url, now=start.request.now)
            waiting.append(after_fetch(start, fetched, store, record=store.record_poll))
    return waiting


def test_parsed_feeds_waiting_together_are_committed_once(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    config = corpus_config(server, write_config, Corpus(4, 3, seed=14))
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources[:4])
        waiting = parsed_waiting(store, list(config.sources[:4]), clock)
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        outcomes = _store_all(waiting, store, PollRecords(store))
        store.db.conn.set_trace_callback(None)
        assert [o.result for o in outcomes] == ["ok"] * 4
        assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]
        carried = store.db.execute("SELECT count(*) FROM entry_sources").fetchone()[0]
        assert carried == sum(o.new + o.added_source for o in outcomes) > 0


def test_a_storage_fault_in_a_batch_fails_that_source_alone(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    # Feeds parsed as a worker process parses them, then stored together as it stores
    # them: one batch. The database refuses s2's entries.
    config = corpus_config(server, write_config, Corpus(5, 4, seed=13))
    sources = list(config.sources[:5])
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(sources)
        waiting = parsed_waiting(store, sources, clock)
        store.db.execute(
            """CREATE TEMP TRIGGER fault BEFORE INSERT ON entry_sources
               WHEN NEW.source_id = 's2' BEGIN SELECT RAISE(ABORT, 'disk I/O fault'); END"""
        )
        records = PollRecords(store)
        outcomes = _store_all(waiting, store, records)
        records.flush()
        assert [(o.source_id, o.result) for o in outcomes] == [
            ("s0", "ok"),
            ("s1", "ok"),
            ("s2", "error"),
            ("s3", "ok"),
            ("s4", "ok"),
        ]
        assert "disk I/O fault" in (outcomes[2].error or "")
        carriers = {r[0] for r in store.db.execute("SELECT source_id FROM entry_sources")}
        assert carriers == {"s0", "s1", "s3", "s4"}
        states = {r["id"]: r["last_result"] for r in store.source_rows()}
        assert [states[s.id] for s in sources] == ["ok", "ok", "error", "ok", "ok"]


def test_an_answer_that_cannot_be_pickled_arrives_as_an_error() -> None:
    """A worker's exception that pickle refuses still reaches the calling process,
    named and short, instead of being lost in the queue's feeder thread."""
    context = multiprocessing.get_context()
    results = context.Queue()
    refused = ValueError("x" * 10_000, lambda: None)  # a lambda cannot be pickled
    send(results, refused)
    got = receive(results, 5)
    assert isinstance(got, AggregatorError)
    assert str(got).startswith("ValueError: ") and len(str(got)) < 700
    results.close()
    results.join_thread()
