"""feedparser's own test documents through parse, store and publish.

tests/corpus/feedparser/ holds a vendored subset of the documents in the
feedparser 6.0.11 sdist (BSD-2-Clause, its LICENSE beside them): every
ill-formed one, the encoding ones and a sample of the well-formed ones.
`python scripts/feedparser_tests.py` fetches all of them (through pip) into
tests/corpus/feedparser-full/; when that folder is there, they run too.

Every document feedparser can read must ingest without an exception, and
everything published from them must be valid Atom and valid JSON Feed.
Documents feedparser cannot read at all are a ParseError, as for any source.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aggregator.config import load_config
from aggregator.errors import ParseError
from aggregator.poll import extract
from aggregator.publish import Publisher
from aggregator.rules import prepare
from aggregator.store import Store
from tests import atomcheck, jsonfeedcheck

CORPUS = Path(__file__).resolve().parent / "corpus"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = re.compile(rb"^\s*Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
SOURCES = 8  # documents are spread over a few sources, so publishing stays quick


def documents(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".xml", ".rdf") and p.is_file())


def content_type(body: bytes) -> str:
    """The Content-Type a test document says its server sent (in its leading comment)."""
    found = HEADER.search(body[:2000])
    return found.group(1).decode("latin-1") if found else ""


def run_corpus(folder: Path, write_config: Any) -> tuple[int, int, list[str]]:
    """(read, unreadable, problems) for every document under folder."""
    sources = [
        {
            "id": f"fp{n}",
            "name": f"feedparser {n}",
            "url": f"http://feedparser.example.org/{n}.xml",
            "category": ("wellformed", "illformed")[n % 2],
            "tags": ["feedparser"],
        }
        for n in range(SOURCES)
    ]
    config = load_config(write_config(sources), env={})
    found: list[str] = []
    read = unreadable = 0
    with Store(config.settings.database) as store:
        for number, path in enumerate(documents(folder)):
            source = config.sources[number % SOURCES]
            body = path.read_bytes()
            url = "http://feedparser.example.org/" + path.relative_to(folder).as_posix()
            try:
                feed = extract(source, body, url, content_type(body), NOW)
            except ParseError:
                unreadable += 1
                continue
            # Many documents share guids and links (http://example.com/...): one code
            # space per document, so every document's entries are published.
            entries = [
                replace(e, code=f"{path.relative_to(folder).as_posix()}:{e.code}")
                for e in feed.entries
            ]
            try:
                store.ingest(source, feed, prepare(entries, source), NOW)
            except Exception as exc:  # what this test is for: nothing may escape
                found.append(f"{path.relative_to(folder)}: ingest raised {exc!r}")
            read += 1
        Publisher(config, store).publish()
    for published in sorted(config.settings.output_dir.rglob("*")):
        relative = published.relative_to(config.settings.output_dir)
        if published.suffix == ".xml":
            found += [f"{relative}: {p}" for p in atomcheck.problems(published.read_bytes())]
        elif published.suffix == ".json":
            found += [f"{relative}: {p}" for p in jsonfeedcheck.problems(published.read_bytes())]
    return read, unreadable, found


def test_vendored_feedparser_documents(write_config: Any) -> None:
    read, unreadable, found = run_corpus(CORPUS / "feedparser", write_config)
    assert read > 100 and unreadable < read
    assert found == []


@pytest.mark.skipif(
    not (CORPUS / "feedparser-full").is_dir(),
    reason="run scripts/feedparser_tests.py to fetch all of feedparser's documents",
)
def test_all_feedparser_documents(write_config: Any) -> None:
    read, _, found = run_corpus(CORPUS / "feedparser-full", write_config)
    assert read > 1000
    assert found == []
