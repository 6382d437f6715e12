"""feedparser's own test documents (all 2,233 of the 6.0.11 sdist) through parse, store
and publish, read from the archive committed under tests/corpus/ (see tests/fpcorpus.py).

Each document is polled as a source of its own, all into one store, as if a user had
subscribed to every one. Each must keep exactly the entries the corpus manifest says:
feedparser's own count of its entries, less the few documents that list one article
twice (none may swallow another document's entries, however alike their guids, titles
or empty contents are). Documents our parser refuses are a ParseError, as for any
source, and are the ones the manifest lists. Everything published from the store must
be valid Atom and valid JSON Feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aggregator.config.loader import Source, load_config
from aggregator.errors import ParseError
from aggregator.identity.rules import filter_and_classify
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import extract
from aggregator.store.sqlite import SqliteStore
from tests import atomcheck, jsonfeedcheck, rsscheck
from tests.fpcorpus import NOW, URL, content_type, documents, manifest


@dataclass
class CorpusRun:
    unreadable: list[str] = field(default_factory=list)  # documents that are a ParseError
    kept: dict[str, int] = field(default_factory=dict)  # document -> entries it keeps
    carriers: dict[str, set[str]] = field(default_factory=dict)  # code -> its documents
    problems: list[str] = field(default_factory=list)  # in what was published


def run_corpus(docs: Mapping[str, bytes], write_config: Any) -> CorpusRun:
    """Every document polled as a source of its own into one store, then published and
    checked (also used by scripts/w3c_feedvalidator.py)."""
    config = load_config(write_config([]), env={})
    names = list(docs)
    sources = [
        Source(f"d{number:04d}", name, URL + name, name.split("/")[0], ("feedparser",))
        for number, name in enumerate(names)
    ]
    config = replace(config, sources=tuple(sources))
    run = CorpusRun()
    with SqliteStore(config.settings.database) as store:
        with store.batch():  # one commit: the store's work is what is tested, not fsync
            for source, name in zip(sources, names, strict=True):
                body = docs[name]
                try:
                    feed = extract(source, body, URL + name, content_type(body), NOW)
                except ParseError:
                    run.unreadable.append(name)
                    continue
                store.ingest(source, feed, filter_and_classify(list(feed.entries), source), NOW)
                for entry in feed.entries:
                    run.carriers.setdefault(entry.code, set()).add(name)
        kept = dict(
            store.db.execute("SELECT source_id, count(*) FROM entry_sources GROUP BY source_id")
        )
        Publisher(config, store).publish()
    run.kept = {s.name: kept.get(s.id, 0) for s in sources if s.name not in run.unreadable}
    for published in sorted(config.settings.output_dir.rglob("*")):
        relative = published.relative_to(config.settings.output_dir)
        data = published.read_bytes() if published.is_file() else b""
        if published.suffix == ".xml":
            run.problems += [f"{relative}: {p}" for p in atomcheck.problems(data)]
        elif published.suffix == ".json":
            run.problems += [f"{relative}: {p}" for p in jsonfeedcheck.problems(data)]
        elif published.suffix == ".rss":
            run.problems += [f"{relative}: {p}" for p in rsscheck.problems(data)]
    return run


def test_the_archive_holds_the_whole_corpus() -> None:
    names = list(documents())
    assert len(names) == 2233
    assert {name.split("/")[0] for name in names} == {
        "wellformed",
        "illformed",
        "encoding",
        "entities",
    }
    listed = manifest()
    assert sorted([*listed["entries"], *listed["unreadable"]]) == names


def test_every_document_keeps_its_own_entries_and_everything_published_is_valid(
    write_config: Any,
) -> None:
    run = run_corpus(documents(), write_config)
    assert run.unreadable == manifest()["unreadable"]
    assert run.kept == manifest()["entries"]
    # Before identity scopes, 918 documents' entries all got one code (the hash of an
    # empty title and no date). A code several documents share now is a global one: the
    # same article URL or URI guid.
    shared = {code for code, found in run.carriers.items() if len(found) > 1}
    assert shared and all(code.startswith(("guid:", "link:")) for code in shared)
    assert run.problems == []
