"""The floor under a first poll: lxml parsing and SQLite inserting alone, same corpus.

    python -m bench.floor 1000 20

Every document of the bench corpus is parsed by lxml (each item's or entry's title, link,
guid, date and body read as text), and the entries are inserted into a new SQLite file
in WAL mode (one row each with those fields, one transaction per feed, as a poll
commits). Nothing else: no fetching, no encoding decision, no sanitizing, no
identities, no deduplication, no publishing. One process; CPU seconds per entry.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

from bench.corpus import Corpus

ATOM = "{http://www.w3.org/2005/Atom}"
FIELDS = ("title", "link", "guid", "date", "body")


def entries_of(document: bytes) -> list[tuple[str, ...]]:
    root = etree.fromstring(document)
    if root.tag == f"{ATOM}feed":
        return [
            (
                entry.findtext(f"{ATOM}title") or "",
                entry.find(f"{ATOM}link").get("href", ""),  # type: ignore[union-attr]
                entry.findtext(f"{ATOM}id") or "",
                entry.findtext(f"{ATOM}updated") or "",
                entry.findtext(f"{ATOM}content") or "",
            )
            for entry in root.iter(f"{ATOM}entry")
        ]
    return [
        (
            item.findtext("title") or "",
            item.findtext("link") or "",
            item.findtext("guid") or "",
            item.findtext("pubDate") or "",
            item.findtext("description") or "",
        )
        for item in root.iter("item")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("feeds", type=int)
    parser.add_argument("entries", type=int)
    args = parser.parse_args()
    corpus = Corpus(args.feeds, args.entries)
    documents = [corpus.render(feed) for feed in corpus.feeds]
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as name:
        db = sqlite3.connect(Path(name) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"CREATE TABLE entries (id INTEGER PRIMARY KEY, {', '.join(FIELDS)})")
        started = time.process_time()
        parsed = [entries_of(document) for document in documents]
        parsing = time.process_time() - started
        started = time.process_time()
        for rows in parsed:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                f"INSERT INTO entries ({', '.join(FIELDS)}) VALUES (?, ?, ?, ?, ?)", rows
            )
            db.execute("COMMIT")
        inserting = time.process_time() - started
        db.close()
    count = sum(len(rows) for rows in parsed)
    print(
        json.dumps(
            {
                "entries": count,
                "parse_us_per_entry": round(parsing / count * 1e6, 1),
                "insert_us_per_entry": round(inserting / count * 1e6, 1),
                "floor_entries_per_cpu_second": round(count / (parsing + inserting)),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
