"""feedparser's own test documents, read straight from the archive under tests/corpus/.

tests/corpus/feedparser-6.0.11-tests.tar.gz holds the tests/{wellformed,illformed,
encoding,entities} folders of the feedparser 6.0.11 sdist on PyPI, unchanged, and its
LICENSE (BSD-2-Clause); tests/corpus/feedparser-manifest.toml says how many entries the
store keeps from each document. scripts/feedparser_tests.py rebuilds both.
"""

from __future__ import annotations

import functools
import re
import tarfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus"
ARCHIVE = CORPUS / "feedparser-6.0.11-tests.tar.gz"
MANIFEST = CORPUS / "feedparser-manifest.toml"
URL = "http://feedparser.example.org/"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
_HEADER = re.compile(rb"^\s*Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def is_document(name: str) -> bool:
    return name.endswith((".xml", ".rdf"))


@functools.cache
def documents() -> dict[str, bytes]:
    """Every test document, by its path in the archive (e.g. "wellformed/rss/x.xml")."""
    found = {}
    with tarfile.open(ARCHIVE) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member) if member.isfile() else None
            if data is not None and is_document(member.name):
                found[member.name] = data.read()
    return dict(sorted(found.items()))


@functools.cache
def manifest() -> dict[str, Any]:
    with open(MANIFEST, "rb") as file:
        return tomllib.load(file)


def content_type(body: bytes) -> str:
    """The Content-Type a test document says its server sent (in its leading comment)."""
    found = _HEADER.search(body[:2000])
    return found.group(1).decode("latin-1") if found else ""
