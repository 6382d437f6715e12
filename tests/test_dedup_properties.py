"""Dedup on a real SqliteStore: the order sources are polled in never changes what is stored."""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.config.loader import Source
from aggregator.identity.dedup import (
    Action,
    Decision,
    StoredEntry,
    decide,
    entry_hash,
    in_current_hashes,
    is_current_hash,
    legacy_entry_hash,
)
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.store.sqlite import SqliteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = datetime(2025, 6, 1, tzinfo=UTC)
SOURCES = ("a", "b", "c")


def source(source_id: str) -> Source:
    return Source(
        source_id,
        source_id,
        f"http://{source_id}.example.cn/feed",
        f"cat-{source_id}",
        (f"tag-{source_id}",),
    )


def copy(code: int, version: int) -> EntryRecord:
    """Version v of an article: same version, same bytes and the same claimed date."""
    return EntryRecord(
        guid=f"g{code}",
        title=f"标题 {code} v{version}",
        link=f"http://x.cn/NewsShare.html?infoCode=NW{code}",
        published=BASE + timedelta(days=code),
        updated=BASE + timedelta(days=code, hours=version),
        content=f"<p>正文 {code} v{version}</p>",
        code=f"NW{code}",
        code_rule="param:infoCode",
    )


def fingerprint(path: Path) -> dict[str, Any]:
    """Everything stored (first_seen included: every poll here runs at NOW)."""
    conn = sqlite3.connect(path)
    try:
        return {
            "entries": conn.execute(
                """SELECT code, code_rule, guid, title, link, published, updated, first_seen,
                          author, summary, content, categories, enclosures, source_id
                   FROM entries ORDER BY code"""
            ).fetchall(),
            "carriers": conn.execute(
                "SELECT code, source_id, entry_hash FROM entry_sources ORDER BY 1, 2"
            ).fetchall(),
            "categories": conn.execute("SELECT * FROM entry_categories ORDER BY 1, 2").fetchall(),
            "tags": conn.execute("SELECT * FROM entry_tags ORDER BY 1, 2").fetchall(),
        }
    finally:
        conn.close()


def run_polls(
    folder: Path, name: str, feeds: dict[str, list[EntryRecord]], order: list[str]
) -> Path:
    path = folder / f"{name}.db"
    with SqliteStore(path) as store:
        for source_id in order:
            feed = ParsedFeed("rss20", source_id, "", "")
            store.ingest(source(source_id), feed, feeds[source_id], NOW)
    return path


# Which version of which article each source lists (None: does not list it).
carried = st.dictionaries(
    st.sampled_from(SOURCES),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=6),
    min_size=2,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(carried, st.data())
def test_any_interleaving_of_polls_gives_the_same_store(
    listing: dict[str, list[tuple[int, int]]], data: st.DataObject
) -> None:
    feeds = {s: [copy(code, version) for code, version in items] for s, items in listing.items()}
    polls = [s for s in sorted(feeds) for _ in range(2)]  # each source polled twice
    order = data.draw(st.permutations(polls))
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        expected = fingerprint(run_polls(folder, "sorted", feeds, polls))
        assert fingerprint(run_polls(folder, "shuffled", feeds, order)) == expected
        # And the entry shows the newest copy any source lists, from the first source
        # (by id) that lists it (each feed lists its first copy of an article: a feed
        # listing one code twice counts it once).
        newest: dict[str, tuple[int, str]] = {}
        for source_id, items in sorted(listing.items()):
            firsts: dict[int, int] = {}
            for code, version in items:
                firsts.setdefault(code, version)
            for code, version in firsts.items():
                if version > newest.get(f"NW{code}", (-1, ""))[0]:
                    newest[f"NW{code}"] = (version, source_id)
        shown = {row[0]: (row[3], row[13]) for row in expected["entries"]}
        assert shown == {c: (f"标题 {c[2:]} v{v}", s) for c, (v, s) in newest.items()}


def test_a_second_carrier_catching_up_with_an_edit_changes_nothing() -> None:
    """A and B carry the article; A's edit is applied; when B shows the same edit,
    the entry must not be re-dated to 'now' (subscribers would see a phantom update)."""
    v1, v2 = copy(1, 0), copy(1, 1)
    hashes = {"a": entry_hash(v2), "b": entry_hash(v1)}
    stored = StoredEntry("NW1", v2.updated or NOW, hashes, v2.published, "a")
    assert decide(stored, "b", v2, entry_hash(v2), NOW).action is Action.OTHER_COPY
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "s.db"
        with SqliteStore(path) as store:
            feed = ParsedFeed("rss20", "t", "", "")
            for source_id, entry in (("a", v1), ("b", v1), ("a", v2)):
                store.ingest(source(source_id), feed, [entry], NOW)
            caught_up = store.ingest(source("b"), feed, [v2], NOW + timedelta(days=1))
            assert not caught_up.changed
            row = next(iter(store.db.query("SELECT updated, title FROM entries")))
        assert row == {"updated": "2025-06-02T01:00:00.000000Z", "title": "标题 1 v1"}


def test_a_new_carrier_with_a_newer_copy_is_shown() -> None:
    """A stopped listing the article before it was edited; B lists the edited copy."""
    v1, v2 = copy(1, 0), copy(1, 1)
    stored = StoredEntry("NW1", v1.updated or NOW, {"a": entry_hash(v1)}, v1.published, "a")
    decision = decide(stored, "b", v2, entry_hash(v2), NOW)
    assert decision == Decision(Action.SWITCH, v2.updated, v2.published)
    shown_v2 = StoredEntry("NW1", v2.updated or NOW, {"a": "x"}, v2.published, "a")
    older = decide(shown_v2, "b", v1, "y", NOW)
    assert older.action is Action.ADD_SOURCE  # an older copy never rolls the entry back


def test_hashes_stored_by_the_old_recipe_are_compared_in_its_terms() -> None:
    """A database from before HASH_VERSION holds old-recipe hashes: the same copy is
    still unchanged (and its hash renewed, once), an edit is still an update, and a
    copy another carrier brought is still known."""
    v1, v2 = copy(1, 0), copy(1, 1)
    old = StoredEntry("NW1", NOW, {"a": legacy_entry_hash(v1), "b": legacy_entry_hash(v2)})
    seen = in_current_hashes(old, v1, entry_hash(v1))
    assert seen.source_hashes == {"a": entry_hash(v1), "b": legacy_entry_hash(v2)}
    assert decide(seen, "a", v1, entry_hash(v1), NOW).action is Action.UNCHANGED
    assert in_current_hashes(seen, v2, entry_hash(v2)).source_hashes["b"] == entry_hash(v2)
    current = StoredEntry("NW1", NOW, {"a": entry_hash(v1)})
    assert in_current_hashes(current, v2, entry_hash(v2)) is current

    with tempfile.TemporaryDirectory() as temp, SqliteStore(Path(temp) / "s.db") as store:
        feed = ParsedFeed("rss20", "t", "", "")
        store.ingest(source("a"), feed, [v1, copy(2, 0)], NOW)
        with store.transaction() as db:  # as an older version stored them
            for entry in (v1, copy(2, 0)):
                db.execute(
                    "UPDATE entry_sources SET entry_hash = ? WHERE code = ?",
                    [legacy_entry_hash(entry), entry.code],
                )
        later = store.ingest(source("a"), feed, [v1, copy(2, 1)], NOW + timedelta(days=1))
        assert (later.unchanged, later.updated, later.new) == (1, 1, 0)
        hashes = dict(store.db.execute("SELECT code, entry_hash FROM entry_sources"))
        assert hashes == {"NW1": entry_hash(v1), "NW2": entry_hash(copy(2, 1))}


def test_the_hash_tells_every_shown_field_apart() -> None:
    """Moving text from one field to the next (the bodies are hashed as they are, with
    their lengths) changes the hash, as does any single field."""
    base = copy(1, 0)
    variants = [
        base,
        replace(base, content="", summary=base.content),
        replace(base, content=base.content[:-1], summary=base.content[-1:]),
        replace(base, title=base.title + "!"),
        replace(base, link=base.link + "&x=1"),
        replace(base, author="记者"),
        replace(base, categories=("文化",)),
        replace(base, updated=NOW),
        replace(base, published=None),
    ]
    assert len({entry_hash(v) for v in variants}) == len(variants)
    assert all(is_current_hash(entry_hash(v)) for v in variants)
    assert not is_current_hash(legacy_entry_hash(base))
