"""Upgrading a database made by the release before identity scopes (schema 9).

tests/fixtures/upgrade/ holds one, made by that release's own code from the feeds
beside it (see its README): two sources' short guids collided there, three
description-only items were stored as one entry, an unstable-guid feed grew on every
poll. Opening it with the current code must merge nothing, lose nothing and keep every
published Atom id; polling the same feeds again must find every old entry under its
old code, and give the articles the old release swallowed entries of their own.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lxml import etree

from aggregator.config.loader import Config, load_config
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import parse_and_store
from aggregator.store.sqlite import SqliteStore
from aggregator.store.sqlite.migrations import SCHEMA_VERSION

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "upgrade"
ATOM = "{http://www.w3.org/2005/Atom}"
AFTER = datetime(2022, 1, 21, 4, 0, tzinfo=UTC)  # a day after the fixture's last poll

# Each table as schema 9 has it, in a stable order.
ROWS = {
    "entries": """SELECT code, code_rule, guid, title, link, published, updated, first_seen,
        author, summary, content, categories, enclosures, source_id FROM entries ORDER BY code""",
    "entry_sources": """SELECT code, source_id, guid, entry_hash, first_seen, last_seen,
        raw_digest FROM entry_sources ORDER BY code, source_id""",
    "entry_categories": "SELECT * FROM entry_categories ORDER BY 1, 2",
    "entry_tags": "SELECT * FROM entry_tags ORDER BY 1, 2",
    "tombstones": "SELECT * FROM tombstones ORDER BY code",
    "feed_positions": "SELECT * FROM feed_positions ORDER BY 1, 2, 4",
}
COLLIDED = {"guid:1", "guid:2"}  # short1's codes that short2's items were recorded under


def old_database(folder: Path) -> Path:
    path = folder / "aggregator.db"
    with gzip.open(FIXTURE / "aggregator.db.gz") as packed, open(path, "wb") as raw:
        shutil.copyfileobj(packed, raw)
    return path


def fixture_config(database: Path, output: Path) -> Config:
    env = {"AGGREGATOR_DATABASE": str(database), "AGGREGATOR_OUTPUT_DIR": str(output)}
    return load_config(FIXTURE / "sources.toml", env=env)


def rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(database) as conn:
        return {table: conn.execute(query).fetchall() for table, query in ROWS.items()}


def published_entries(path: Path) -> dict[str, str]:
    """Atom id -> title of every entry of a published document."""
    root = etree.fromstring(path.read_bytes())
    return {
        e.findtext(f"{ATOM}id") or "": e.findtext(f"{ATOM}title") or ""
        for e in root.iter(f"{ATOM}entry")
    }


def poll_all(config: Config, store: SqliteStore, now: datetime, unstable_guids: str) -> None:
    """Every source polled once more, serving what it served before; the unstable one
    puts a new session into its guids again."""
    for source in config.sources:
        if source.id == "unstable":
            body = (FIXTURE / "feeds" / "unstable-3.xml").read_bytes()
            body = body.replace(b"-sess3<", f"-{unstable_guids}<".encode())
        else:
            body = (FIXTURE / "feeds" / f"{source.id}.xml").read_bytes()
        parse_and_store(source, store, body, source.url, "application/rss+xml", now)


def test_the_upgrade_merges_nothing_loses_nothing_and_keeps_atom_ids(tmp_path: Path) -> None:
    database = old_database(tmp_path)
    before = rows(database)
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (9,)
    config = fixture_config(database, tmp_path / "feeds")
    with SqliteStore(database) as store:
        assert store.schema_version == SCHEMA_VERSION
        Publisher(config, store).publish()
    after = rows(database)
    for table in ROWS:
        if table != "entry_sources":
            assert after[table] == before[table], table
    # Every carrier row is kept; only the collided ones are marked to be read again.
    assert [r[:6] for r in after["entry_sources"]] == [r[:6] for r in before["entry_sources"]]
    for old, new in zip(before["entry_sources"], after["entry_sources"], strict=True):
        assert new[6] == (None if old[0] in COLLIDED else old[6])
    # Every entry keeps its Atom id; only the title-less one reads differently now.
    old_ids = published_entries(FIXTURE / "all.xml")
    new_ids = published_entries(tmp_path / "feeds" / "all.xml")
    assert set(new_ids) == set(old_ids) and len(old_ids) == 21
    changed = {i: (old_ids[i], new_ids[i]) for i in old_ids if old_ids[i] != new_ids[i]}
    assert list(changed.values()) == [
        ("hash:5ba93c9db0cff93f52b521d7420e43f6eda2784f", "Morning run along the river, 8 km.")
    ]


def test_polling_after_the_upgrade_finds_old_entries_and_keeps_what_was_swallowed(
    tmp_path: Path,
) -> None:
    database = old_database(tmp_path)
    before = {row[0]: row for row in rows(database)["entries"]}
    config = fixture_config(database, tmp_path / "feeds")
    with SqliteStore(database) as store:
        poll_all(config, store, AFTER, "sess4")
        after = {row[0]: row for row in rows(database)["entries"]}
        again = dict(after)
        poll_all(config, store, AFTER + timedelta(hours=1), "sess5")
        assert {row[0]: row for row in rows(database)["entries"]} == again
        carriers = {code: store.entry_sources(code) for code in after}
    # Nothing lost, nothing merged: every old entry is there under its old code.
    assert set(before) <= set(after)
    new = {code: row[3] for code, row in after.items() if code not in before}
    # short2's two articles, swallowed by short1's codes, and micro's two other items:
    # entries of their own now. Nothing else is new: the old entries were all found
    # (short1's and the title-and-date ones under their old codes, the unstable feed's
    # new guids by their unchanged content), and short1's removed "3" stays removed.
    micro = before["hash:5ba93c9db0cff93f52b521d7420e43f6eda2784f"]
    assert sorted(new.items()) == sorted(
        [
            ("guid@short2:1", "Club night moves to Thursday"),
            ("guid@short2:2", "Winter tournament results"),
            *((code, "") for code in new if code.startswith("hash@micro:")),
        ]
    )
    assert len(new) == 4
    assert {after[c][10] for c in new if c.startswith("hash@micro:")} == {
        "Trying a new bread recipe today.",
        "The bread was a success.",
    }
    assert after[micro[0]] == micro
    assert carriers["guid@short2:1"] == ["short2"] and carriers["guid@short2:2"] == ["short2"]
    # short1's "2" shows short1's article again: short2's copy had replaced it.
    assert (after["guid:2"][3], after["guid:2"][13]) == ("Pruning roses", "short1")
    assert after["guid:2"][6] == "2022-01-21T04:00:00.000000Z"  # a change subscribers see
    assert after["guid:1"] == before["guid:1"]  # short1's own copy: untouched
    unchanged = set(before) - {"guid:2"}
    assert all(after[code] == before[code] for code in unchanged)
