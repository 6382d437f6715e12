"""Our first poll's own stages, one process, CPU per entry, on the bench corpus.

    python -m bench.stages 200 50 [--markup cms]

What a first poll's worker processes spend on each entry apart from fetching: the parse
(parse_for_store, for a source never parsed) and the storing (ingest_parsed of
STORE_BATCH feeds per commit, under bulk_writes, into a new SQLite file). Beside
bench.floor (lxml and SQLite alone), it tells how far above the floor each stage is and
where a poll's CPU goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator.config.loader import load_config
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.parse.kinds import load_readers
from aggregator.parse.limits import ParseLimits
from aggregator.run.poll import ingest_parsed, parse_for_store
from aggregator.run.pollrun import STORE_BATCH, WORKER_GC_THRESHOLD
from aggregator.store import open_store
from bench.corpus import MARKUPS, Corpus
from bench.runs import write_config

Parsed = tuple[ParsedFeed, list[EntryRecord]]
DEFAULT_GC = gc.get_threshold()


def measure(feeds: int, entries: int, folder: Path, markup: str = "seed") -> dict[str, Any]:
    corpus = Corpus(feeds, entries, markup=markup)
    documents = [(corpus.render(feed), feed.content_type) for feed in corpus.feeds]
    # The corpus server's addresses do not matter here: the documents are read from memory.
    params = {"feeds": feeds, "entries": entries, "bases": ["http://127.0.0.1:9"]}
    config = load_config(write_config(folder, params))
    sources = list(config.enabled_sources)
    limits = ParseLimits.from_settings(config.settings)
    load_readers(["feed"])
    now = datetime.now(UTC)
    store = open_store(folder / "stages.db")
    store.sync_sources(config.sources)

    # As a worker process parses and stores (pollrun._process_main): fewer young
    # collections.
    gc.freeze()
    gc.set_threshold(WORKER_GC_THRESHOLD, 20, 20)
    started = time.process_time()
    parsed: list[Parsed] = []
    for source, (body, content_type) in zip(sources, documents, strict=True):
        feed, kept = parse_for_store(
            source, store, body, source.url, content_type, now, limits, parsed_before=False
        )
        parsed.append((replace(feed, entries=()), kept))  # its entries travel as `kept`
    parsing = time.process_time() - started

    started = time.process_time()  # the checkpointing thread's CPU is counted too
    pairs = list(zip(sources, parsed, strict=True))
    with store.bulk_writes():
        for first in range(0, len(pairs), STORE_BATCH):
            with store.batch():
                for source, (feed, kept) in pairs[first : first + STORE_BATCH]:
                    ingest_parsed(store, source, feed, kept, now)
    storing = time.process_time() - started
    gc.set_threshold(*DEFAULT_GC)
    gc.unfreeze()
    store.close()

    count = sum(len(kept) for _, kept in parsed)
    return {
        "entries": count,
        "parse_us_per_entry": round(parsing / count * 1e6, 1),
        "store_us_per_entry": round(storing / count * 1e6, 1),
        "entries_per_cpu_second": round(count / (parsing + storing)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages")
    parser.add_argument("feeds", type=int)
    parser.add_argument("entries", type=int)
    parser.add_argument("--markup", choices=MARKUPS, default="seed", help="bench/corpus.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as name:
        result = measure(args.feeds, args.entries, Path(name), args.markup)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
