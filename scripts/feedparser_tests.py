#!/usr/bin/env python3
"""Fetch feedparser's own test documents through PyPI, for tests/test_feedparser_corpus.py.

    python scripts/feedparser_tests.py [--version 6.0.11]

Downloads the feedparser sdist with pip (the package registry, no other
network) and unpacks its tests/{wellformed,illformed,encoding,entities}
folders and its LICENSE (BSD-2-Clause) into tests/corpus/feedparser-full/,
which git ignores. The tests never download anything: with the folder
present they also run every document in it; a subset is vendored in
tests/corpus/feedparser/ and always runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "corpus" / "feedparser-full"
FOLDERS = ("wellformed", "illformed", "encoding", "entities")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="6.0.11")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"),
                *("--disable-pip-version-check", "-q", f"feedparser=={args.version}", "-d", temp),
            ],
            check=True,
        )
        archive = next(Path(temp).glob("feedparser-*.tar.gz"))
        shutil.rmtree(TARGET, ignore_errors=True)
        TARGET.mkdir(parents=True)
        count = 0
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 2:
                    continue
                wanted = parts[1] == "LICENSE" or (
                    len(parts) > 3 and parts[1] == "tests" and parts[2] in FOLDERS
                )
                if not wanted:
                    continue
                relative = Path(*parts[1:]) if parts[1] == "LICENSE" else Path(*parts[2:])
                destination = TARGET / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                destination.write_bytes(source.read())
                count += 1
    print(f"{count} files from feedparser {args.version} in {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
