#!/usr/bin/env python3
"""Rebuild tests/corpus/feedparser-<version>-tests.tar.gz and its manifest.

    python scripts/feedparser_tests.py [--version 6.0.11] [--manifest-only]

Downloads the feedparser sdist with pip (the package registry, no other network)
and packs its tests/{wellformed,illformed,encoding,entities} folders and its LICENSE
(BSD-2-Clause) into one compressed archive, the same bytes on every run (sorted
members, no times or owners). tests/test_feedparser_corpus.py reads the documents
straight from it: a fresh clone runs the whole corpus with no download.

It also writes tests/corpus/feedparser-manifest.toml: for each document, the number of
entries the store must keep from it. That is the number of entries feedparser itself
finds there, except for the few documents whose entries are one article twice
(SAME_ARTICLE, reviewed by hand); documents our parser refuses (CDF, EBCDIC, a
document with no feed at all) are listed as unreadable.
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
FOLDERS = ("wellformed", "illformed", "encoding", "entities")

# Documents whose entries are one article more than once: what the store keeps.
SAME_ARTICLE = {
    "wellformed/lang/entry_content_xml_lang_blank_3.xml": (
        1,
        "two entries with the same content and nothing else",
    ),
    "wellformed/node_precedence/atom10_arbitrary_element.xml": (1, "two empty entries"),
    "wellformed/node_precedence/atom10_id.xml": (1, "two entries with one atom:id"),
    "wellformed/node_precedence/atom10_title.xml": (
        1,
        "two entries with the same title and nothing else",
    ),
}


def archive_path(version: str) -> Path:
    return CORPUS / f"feedparser-{version}-tests.tar.gz"


def download(version: str, folder: str) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"),
            *("--disable-pip-version-check", "-q", f"feedparser=={version}", "-d", folder),
        ],
        check=True,
    )
    return next(Path(folder).glob("feedparser-*.tar.gz"))


def wanted(sdist: Path) -> dict[str, bytes]:
    """The LICENSE and the test documents, by their path in the new archive."""
    found = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2:
                continue
            if parts[1] == "LICENSE":
                name = "LICENSE"
            elif len(parts) > 3 and parts[1] == "tests" and parts[2] in FOLDERS:
                name = "/".join(parts[2:])
            else:
                continue
            data = tar.extractfile(member)
            assert data is not None
            found[name] = data.read()
    return found


def pack(files: dict[str, bytes], destination: Path) -> None:
    """A tar.gz with the same bytes for the same files: sorted, no times, no owners."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(files[name]), 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    with open(destination, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())


def manifest(files: dict[str, bytes], version: str) -> str:
    sys.path.insert(0, str(ROOT))
    import feedparser

    from aggregator.config.loader import Source
    from aggregator.errors import ParseError
    from aggregator.run.poll import extract
    from tests.fpcorpus import NOW, URL, content_type, is_document

    source = Source("fp", "fp", URL, "c")
    counts: dict[str, int] = {}
    unreadable: list[str] = []
    for name, body in sorted(files.items()):
        if not is_document(name):
            continue
        try:
            extract(source, body, URL + name, content_type(body), NOW)
        except ParseError:
            unreadable.append(name)
            continue
        counts[name] = SAME_ARTICLE.get(name, (len(feedparser.parse(body).entries), ""))[0]
    lines = [
        f"# feedparser {version}'s test documents ({archive_path(version).name}), made by",
        "# scripts/feedparser_tests.py: how many entries the store keeps from each one, by",
        "# feedparser's own count, except where a document lists one article twice:",
        *(f"#   {name}: {reason}" for name, (_, reason) in sorted(SAME_ARTICLE.items())),
        f"# (feedparser {feedparser.__version__} counted them.)",
        "",
        "# Documents our parser refuses (CDF, EBCDIC encodings, no feed at all).",
        "unreadable = [",
        *(f'    "{name}",' for name in unreadable),
        "]",
        "",
        "[entries]",
        *(f'"{name}" = {count}' for name, count in counts.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="6.0.11")
    parser.add_argument(
        "--manifest-only",
        action="store_true",
        help="rewrite the manifest from the archive already here (after a parser change)",
    )
    args = parser.parse_args()
    if args.manifest_only:
        with tarfile.open(archive_path(args.version)) as tar:
            files = {
                m.name: data.read()
                for m in tar.getmembers()
                if (data := tar.extractfile(m)) is not None
            }
    else:
        with tempfile.TemporaryDirectory() as temp:
            files = wanted(download(args.version, temp))
        pack(files, archive_path(args.version))
    (CORPUS / "feedparser-manifest.toml").write_text(
        manifest(files, args.version), encoding="utf-8"
    )
    print(f"{len(files)} files from feedparser {args.version} in {archive_path(args.version)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
