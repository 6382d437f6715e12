#!/usr/bin/env python3
"""Run the W3C feed validator over what aggregator publishes, offline.

    python scripts/w3c_feedvalidator.py --validator PATH [FOLDER ...]

PATH is the src/ folder of a checkout of https://github.com/w3c/feedvalidator (Python
3; it needs html5lib and rdflib: `pip install html5lib rdflib`). It is not on PyPI
and not vendored here: fetch it yourself; AGGREGATOR_FEEDVALIDATOR may name it
instead of --validator. Each FOLDER is an output folder of published feeds; without
one, the script publishes feedparser's test documents (all of them, from the archive in
tests/corpus/) and a set of hostile documents (malformed urn:uuid: ids,
ids with spaces, look-alike hosts, display hazards, impossible dates) through the
pipeline into a temporary folder and checks that. Every Atom (.xml) and RSS (.rss)
document is validated as the online validator does (its "AA" filter); errors are
listed and make the exit status 1, warnings are counted (listed with --warnings).

tests/test_w3c_feedvalidator.py runs the same check when AGGREGATOR_FEEDVALIDATOR is
set; tests/atomcheck.py re-implements the validator's URI rules so the suite checks
them everywhere without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' corpus runner
BASE_URL = "http://feeds.example.org"

# Documents a hostile source might send, beside feedparser's own.
HOSTILE = {
    "bad-uuid.atom.xml": (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>坏 id</title><id>urn:uuid:6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21a</id>"
        "<updated>2021-12-24T03:00:26Z</updated><entry><title>第一条</title>"
        "<id>urn:uuid:6f1c9a52-3b1e-5d4a-9a57-2c4b0e7f1d21b</id>"
        '<link href="http://例子.中国/新闻 1.html"/><updated>2021-12-24T03:00:26Z</updated>'
        '<content type="html">&lt;a href="http://pаypаl.com/"&gt;x&lt;/a&gt;</content>'
        "</entry></feed>"
    ),
    "spaces.rss.xml": (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>&lt;独家&gt;频道</title><link>http://x.cn/a b/</link>"
        "<item><title>&lt;独家&gt;报道</title><guid>Correct Value</guid>"
        "<pubDate>Fri, 24 Dec 2021 03:00:26 +2500</pubDate><description>正文</description></item>"
        "<item><title>\u202e如果 a&lt;b 且 b&gt;c\u200b</title><link>http://pаypаl.com/login</link>"
        '<enclosure url="http://x.cn/a b.mp3" type="audio/mpeg" length="1"/>'
        "<description>正文</description></item></channel></rss>"
    ),
}


def load_validator(path: Path) -> Any:
    sys.path.insert(0, str(path))
    import feedvalidator  # type: ignore[import-not-found]

    return feedvalidator


def publish_corpus(out: Path) -> Path:
    """feedparser's documents and HOSTILE through the pipeline; the output folder."""
    from tests.fpcorpus import documents
    from tests.test_feedparser_corpus import run_corpus

    groups = {
        "feedparser": documents(),
        "hostile": {name: text.encode() for name, text in HOSTILE.items()},
    }
    for number, (group, docs) in enumerate(groups.items()):
        run = run_corpus(docs, _config_writer(out, str(number)))
        read = len(docs) - len(run.unreadable)
        print(f"{group}: {read} documents read, {len(run.unreadable)} unreadable", file=sys.stderr)
        for problem in run.problems:
            print(f"  tests/atomcheck: {problem}", file=sys.stderr)
    return out / "feeds"


def _config_writer(out: Path, name: str) -> Any:
    """A write_config (tests/conftest.py) publishing under feeds/<name>, at BASE_URL/<name>."""
    from tests.conftest import config_text

    def write(sources: list[dict[str, Any]], **settings: Any) -> Path:
        settings.setdefault("database", str(out / f"{name}.db"))
        settings.setdefault("output_dir", str(out / "feeds" / name))
        settings.setdefault("base_url", f"{BASE_URL}/{name}")
        path = out / f"{name}.toml"
        path.write_text(config_text(sources, **settings), encoding="utf-8")
        return path

    return write


def _documents(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".xml", ".rss"))


def validate(validator: Any, folder: Path, base_url: str) -> tuple[list[str], Counter[str]]:
    """(errors, warnings by kind) of every Atom and RSS document under folder."""
    from feedvalidator import compatibility  # type: ignore[import-not-found]
    from feedvalidator.logging import Error, ValidationFailure  # type: ignore[import-not-found]
    from feedvalidator.logging import Warning as ValidatorWarning

    errors: list[str] = []
    warnings: Counter[str] = Counter()
    for path in _documents(folder):
        relative = path.relative_to(folder).as_posix()
        base = f"{base_url}/{relative}"  # where it is served: its self link says so
        try:
            result = validator.validateString(path.read_bytes(), firstOccurrenceOnly=1, base=base)
            events = result["loggedEvents"]
        except ValidationFailure as failure:
            events = [failure.event]
        for event in compatibility.AA(events):
            name = type(event).__name__
            if isinstance(event, Error):
                detail = {k: str(v)[:100] for k, v in event.params.items() if k != "backupcolumn"}
                errors.append(f"{relative}: {name} {detail}")
            elif isinstance(event, ValidatorWarning):
                warnings[name] += 1
    return errors, warnings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument(
        "--validator", type=Path, default=os.environ.get("AGGREGATOR_FEEDVALIDATOR")
    )
    parser.add_argument(
        "--base-url", default=BASE_URL, help="the base_url the feeds were published under"
    )
    parser.add_argument("--warnings", action="store_true", help="list the warnings by kind")
    args = parser.parse_args()
    if not args.validator:
        parser.error("give --validator PATH (the src/ folder of a w3c/feedvalidator checkout)")
    validator = load_validator(args.validator)
    with tempfile.TemporaryDirectory() as temp:
        folders = args.folders or [publish_corpus(Path(temp))]
        errors: list[str] = []
        warnings: Counter[str] = Counter()
        for folder in folders:
            found, warned = validate(validator, folder, args.base_url)
            errors += found
            warnings += warned
        documents = sum(len(_documents(f)) for f in folders)
    for error in errors:
        print(error)
    print(f"{documents} documents: {len(errors)} errors, {sum(warnings.values())} warnings")
    if args.warnings:
        for name, count in warnings.most_common():
            print(f"  warning {name}: {count}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
