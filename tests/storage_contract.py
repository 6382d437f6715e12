"""The storage contract: tests written against aggregator.store.interface.Storage only,
so that every backend runs the same ones. A backend's test module imports them and
gives a `storage` fixture (a new, empty store) and a `reopen` fixture (the same store
opened again, as another process would): see tests/test_store_contract.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.config.loader import Source
from aggregator.errors import BatchFailed, StoreError
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.store.interface import Storage
from aggregator.store.records import (
    HISTORY_DAYS,
    Candidate,
    IngestResult,
    PollRecord,
    SourceMeta,
    StoredArticle,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEWS = Source("news", "News", "http://a.example/feed.xml", "要闻", tags=("本地",))
COPY = Source("copy", "Copy", "http://b.example/feed.xml", "转载", tags=("转载",))
Reopen = Callable[[], Storage]


def entry(number: int, **fields: object) -> EntryRecord:
    values: dict[str, object] = {
        "guid": f"http://a.example/{number}",
        "title": f"第{number}条",
        "link": f"http://a.example/{number}",
        "published": T0 + timedelta(minutes=number),
        "updated": T0 + timedelta(minutes=number),
        "content": f"<p>正文 {number}</p>",
        "code": f"NW{number:06d}",
        "code_rule": "param:infoCode",
    }
    values.update(fields)
    return EntryRecord(**values)  # type: ignore[arg-type]


def ingest(
    storage: Storage, source: Source, entries: Sequence[EntryRecord], now: datetime
) -> IngestResult:
    feed = ParsedFeed("rss20", f"{source.name} feed", source.url, "")
    return storage.ingest(source, feed, list(entries), now)


# --- sources and poll state ----------------------------------------------------------


def test_a_store_with_no_other_writer_can_write_now(storage: Storage) -> None:
    assert storage.can_write_now()


def test_an_unknown_source_has_a_blank_state(storage: Storage) -> None:
    state = storage.source_state("nobody")
    assert (state.id, state.etag, state.error_count, state.next_poll_at) == (
        "nobody",
        None,
        0,
        None,
    )
    assert storage.source_states(["a", "b"])["b"].id == "b"


def test_poll_records_round_trip(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    storage.record_poll(
        "news",
        PollRecord(
            last_poll_at=T0,
            last_result="ok",
            last_http_status=200,
            etag='"v1"',
            last_modified="Sun, 01 Mar 2026 12:00:00 GMT",
            body_hash="abc",
            error_count=0,
            next_poll_at=T0 + timedelta(minutes=30),
            poll_hints='{"ttl_minutes": 60}',
        ),
    )
    state = storage.source_state("news")
    assert state.etag == '"v1"' and state.body_hash == "abc"
    assert state.next_poll_at == T0 + timedelta(minutes=30)
    assert state.poll_hints == '{"ttl_minutes": 60}'
    # Fields a record leaves out are kept; None clears one.
    storage.record_poll("news", PollRecord(error_count=2, etag=None))
    state = storage.source_state("news")
    assert (state.error_count, state.etag, state.body_hash) == (2, None, "abc")
    assert storage.never_parsed(["news", "other"]) == 1
    row = {r["id"]: r for r in storage.source_rows()}["news"]
    assert row["last_result"] == "ok" and row["entry_count"] == 0


def test_a_batch_of_polls_keeps_each_sources_last(storage: Storage) -> None:
    failed = PollRecord(last_poll_at=T0, last_result="error", last_error="503", error_count=1)
    fine = PollRecord(last_poll_at=T0, last_result="ok", error_count=0)
    storage.record_polls([("a", failed), ("b", fine), ("a", fine)])
    assert storage.source_state("a").error_count == 0
    assert [r["last_result"] for r in storage.source_rows()] == ["ok", "ok"]


def test_a_changed_url_forgets_what_the_old_one_said(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    gone = PollRecord(etag='"x"', moved_to="http://c.example/", disabled_reason="410 Gone")
    storage.record_poll("news", gone)
    storage.sync_sources([NEWS])  # same URL: kept
    assert storage.source_state("news").disabled_reason == "410 Gone"
    moved = Source("news", "News", "http://a.example/new.xml", "要闻")
    storage.sync_sources([moved])
    state = storage.source_state("news")
    assert (state.etag, state.moved_to, state.disabled_reason) == (None, None, None)


def test_enabling_a_stopped_source_makes_it_due(storage: Storage) -> None:
    storage.sync_sources([NEWS, COPY])
    storage.record_poll(
        "news", PollRecord(disabled_reason="410 Gone", next_poll_at=T0 + timedelta(days=1))
    )
    assert storage.enable_sources(["news", "copy"]) == ["news"]
    state = storage.source_state("news")
    assert (state.disabled_reason, state.next_poll_at) == (None, None)


def test_source_meta_follows_the_feed(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    before = storage.version("source_meta")
    ingest(storage, NEWS, [entry(1)], T0)
    assert storage.source_meta_rows() == [
        SourceMeta("news", "News", NEWS.url, "News feed", NEWS.url, "", None)
    ]
    assert storage.version("source_meta") != before


# --- ingest --------------------------------------------------------------------------


def test_ingest_new_edited_and_unchanged_entries(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    first = ingest(storage, NEWS, [entry(1), entry(2)], T0)
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    assert first.changed_feeds == {
        ("all", ""),
        ("source", "news"),
        ("category", "要闻"),
        ("tag", "本地"),
    }
    again = ingest(storage, NEWS, [entry(1), entry(2)], T0 + timedelta(hours=1))
    assert (again.new, again.updated, again.unchanged, again.changed) == (0, 0, 2, False)
    edited = entry(2, title="第2条（更正）", updated=T0 + timedelta(hours=2))
    later = ingest(storage, NEWS, [entry(1), edited], T0 + timedelta(hours=2))
    assert (later.new, later.updated, later.unchanged) == (0, 1, 1)
    shown = storage.articles_by_code(["NW000002"])["NW000002"]
    assert shown.title == "第2条（更正）" and shown.updated == T0 + timedelta(hours=2)
    assert storage.entry_count() == 2


def test_one_article_from_two_sources_is_one_entry_with_both_carriers(storage: Storage) -> None:
    storage.sync_sources([NEWS, COPY])
    ingest(storage, NEWS, [entry(1)], T0)
    added = ingest(storage, COPY, [entry(1, guid="http://b.example/x")], T0 + timedelta(hours=1))
    assert (added.new, added.added_source) == (0, 1)
    assert storage.entry_count() == 1
    assert storage.entry_sources("NW000001") == ["copy", "news"]
    article = storage.articles(("source", "copy"), 10)[0]
    assert article.code == "NW000001"
    assert set(article.entry_categories) == {"要闻", "转载"}
    assert set(article.tags) == {"本地", "转载"}
    assert {("source", "copy"), ("category", "转载")} <= storage.feed_keys()


def test_known_digests_recognise_a_stored_copy(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    ingest(storage, NEWS, [entry(1, raw_digest="d1")], T0)
    assert storage.known_digests("news") == {"d1": "NW000001"}


def test_imported_articles_are_stored_once(storage: Storage) -> None:
    article = StoredArticle(
        code="NW900001",
        title="导入",
        link="http://a.example/imported",
        published=T0,
        updated=T0,
        author="",
        summary="",
        content="<p>导入</p>",
        categories=(),
        enclosures=(),
        source_id="news",
        tags=("本地",),
        entry_categories=("要闻",),
    )
    assert storage.import_articles([article], T0) == (1, 0)
    assert storage.import_articles([article], T0) == (0, 1)
    assert storage.articles(("tag", "本地"), 5)[0].title == "导入"


# --- publishing ----------------------------------------------------------------------


def test_positions_are_given_once_oldest_first(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    ingest(storage, NEWS, [entry(2), entry(1)], T0)
    assert storage.position_feed(("all", "")) == 2
    ingest(storage, NEWS, [entry(3)], T0 + timedelta(hours=1))
    assert storage.position_feed(("all", "")) == 3
    assert storage.position_feed(("all", "")) == 3  # nothing new: nothing moves
    page = storage.positioned_articles(("all", ""), 0, 3)
    assert [a.code for a in page] == ["NW000003", "NW000002", "NW000001"]
    renders = storage.positioned_renders(("all", ""), 0, 2)
    assert [(r.code, r.cached) for r in renders] == [("NW000002", None), ("NW000001", None)]


def test_the_render_cache_keeps_a_row_until_the_entry_changes(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    ingest(storage, NEWS, [entry(1)], T0)
    storage.position_feed(("all", ""))
    seen: list[dict[str, StoredArticle]] = []

    def render(articles: dict[str, StoredArticle]) -> dict[str, bytes]:
        seen.append(articles)
        return {code: f"<{code}/>".encode() for code in articles}

    def cached() -> tuple[str, bytes | None]:
        row = storage.positioned_renders(("all", ""), 0, 1)[0]
        return row.content, row.cached

    assert storage.fill_renders(["NW000001"], render) == {"NW000001": b"<NW000001/>"}
    content = seen[0]["NW000001"].content
    assert cached() == (content, b"<NW000001/>")  # with the stored content
    storage.fill_renders(["NW000001"], lambda articles: {"NW000001": b"again"})
    assert cached() == (content, b"again")  # in place of the one before
    edited = entry(1, title="改", updated=T0 + timedelta(hours=1))
    ingest(storage, NEWS, [edited], T0 + timedelta(hours=1))
    assert cached()[1] is None
    storage.fill_renders(["NW000001"], render)
    storage.clear_renders()
    assert cached()[1] is None


def test_unpublished_marks_are_cleared_only_as_read(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    changed = ingest(storage, NEWS, [entry(1)], T0).changed_feeds
    marks = storage.unpublished()
    assert set(marks) == changed
    ingest(storage, NEWS, [entry(2)], T0 + timedelta(hours=1))  # marked again meanwhile
    storage.mark_published(marks)
    assert set(storage.unpublished()) == changed  # each with its newer mark
    storage.mark_published(storage.unpublished())
    assert storage.unpublished() == {}


def test_a_failed_write_in_a_batch_rolls_back_the_whole_batch(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    with pytest.raises(BatchFailed), storage.batch():
        ingest(storage, NEWS, [entry(1)], T0)

        def broken(articles: dict[str, StoredArticle]) -> dict[str, bytes]:
            raise ValueError("render failed")

        with pytest.raises(ValueError):
            storage.fill_renders(["NW000001"], broken)
    assert storage.entry_count() == 0


def test_a_batch_commits_its_writes_together(storage: Storage, reopen: Reopen) -> None:
    storage.sync_sources([NEWS, COPY])
    with storage.batch():
        ingest(storage, NEWS, [entry(1)], T0)
        ingest(storage, COPY, [entry(2)], T0)
    with reopen() as other:
        assert other.entry_count() == 2


def test_bulk_writes_keep_every_write(storage: Storage, reopen: Reopen) -> None:
    storage.sync_sources([NEWS, COPY])
    with storage.bulk_writes():
        for number in range(1, 41):
            ingest(storage, NEWS if number % 2 else COPY, [entry(number)], T0)
    with reopen() as other:
        assert other.entry_count() == 40


# --- retention -----------------------------------------------------------------------


def test_retention_removes_what_it_chooses_and_it_never_comes_back(storage: Storage) -> None:
    storage.sync_sources([NEWS])
    ingest(storage, NEWS, [entry(1), entry(2)], T0)
    storage.position_feed(("all", ""))
    storage.mark_published(storage.unpublished())
    seen: list[Candidate] = []

    def oldest(candidates: Sequence[Candidate]) -> list[str]:
        seen.extend(candidates)
        return [min(candidates, key=lambda c: c.published).code]

    dry, none = storage.retain(oldest, T0 + timedelta(days=1), dry_run=True)
    assert (dry, none, storage.entry_count()) == (["NW000001"], set(), 2)
    assert {(c.code, c.sources) for c in seen} == {("NW000001", ("news",)), ("NW000002", ("news",))}
    removed, changed = storage.retain(oldest, T0 + timedelta(days=1))
    assert removed == ["NW000001"] and ("all", "") in changed
    assert storage.entry_count() == 1 and ("all", "") in storage.unpublished()
    assert storage.holes() == {("all", ""): {0}}  # its archive page is written again
    again = ingest(storage, NEWS, [entry(1), entry(2)], T0 + timedelta(days=2))
    assert (again.new, again.tombstoned) == (0, 1)


# --- status rows ---------------------------------------------------------------------


def test_status_rows_show_recent_polls_and_days(storage: Storage) -> None:
    storage.sync_sources([NEWS, COPY])
    storage.record_polls(
        [
            ("news", PollRecord(last_poll_at=T0, last_result="ok", last_http_status=200)),
            ("news", PollRecord(last_poll_at=T0 + timedelta(minutes=5), last_result="error")),
            ("copy", PollRecord(last_poll_at=T0, last_result="not_modified")),
        ]
    )
    ingest(storage, NEWS, [entry(1)], T0)
    rows = storage.status_rows(T0 - timedelta(days=1))
    assert rows.entries == 1
    assert [(p.source_id, p.result) for p in rows.recent] == [
        ("copy", "not_modified"),
        ("news", "ok"),
        ("news", "error"),
    ]
    days = {(d.source_id, d.day): (d.failures, d.new_entries) for d in rows.days}
    assert days == {("news", "2026-03-01"): (1, 1)}
    only = storage.status_rows(T0 - timedelta(days=1), lambda rows: ["copy"])
    assert {p.source_id for p in only.recent} == {"copy"} and only.days == []
    storage.prune_history(T0 + timedelta(days=HISTORY_DAYS + 2), ["copy"])
    assert storage.status_rows(T0 - timedelta(days=1)).days == []


# --- errors --------------------------------------------------------------------------


def test_a_closed_store_raises_store_errors(reopen: Reopen) -> None:
    other = reopen()
    other.close()
    with pytest.raises(StoreError):
        other.entry_count()
    with pytest.raises(StoreError):
        other.sync_sources([NEWS])
