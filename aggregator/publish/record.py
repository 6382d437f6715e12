"""What the last publish left in the output folder, so that the next one can tell which
feeds need rendering without rendering them.

The record (``.publish.record`` in the output folder, a dot file nobody serves) holds a
digest of everything a document depends on besides the store's entries (the program,
the config, the set of feeds, the sources' shown metadata) and, for each file it wrote,
its size, modification time and inode. While the digest stands, a feed whose files are
still the recorded ones and whose store changes are all published (no mark) shows what
the store holds: rendering it again would give the same bytes. Anything else (a file
edited, removed or never recorded, a digest that moved) is rendered as before, so a
stale or missing record costs time, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

RECORD_NAME = ".publish.record"  # JSON
FORMAT = 1  # of the file; another number reads as no record

Stamp = tuple[int, int, int]  # size, mtime_ns, inode


def digest(*parts: object) -> str:
    """A digest of the reprs of what the published bytes depend on."""
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).hexdigest()


def stamp(path: Path) -> Stamp | None:
    try:
        found = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (found.st_size, found.st_mtime_ns, found.st_ino)


@dataclass
class PublishRecord:
    context: str
    files: dict[str, Stamp] = field(default_factory=dict)  # path under the folder
    archives: dict[str, int] = field(default_factory=dict)  # archive folder: pages in it

    def holds(self, folder: Path, names: Iterable[str]) -> bool:
        """Whether each of these files is still the one recorded."""
        return all(
            (recorded := self.files.get(name)) is not None and stamp(folder / name) == recorded
            for name in names
        )

    def archived(self, folder: Path, archive_folder: str, suffixes: Iterable[str]) -> bool:
        """Whether every archive page recorded in this folder is still there (pages
        never change once written; only their presence is checked)."""
        pages = self.archives.get(archive_folder, 0)
        if not pages:
            return True
        try:
            names = set(os.listdir(folder / archive_folder))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return all(f"{n}{suffix}" in names for n in range(1, pages + 1) for suffix in suffixes)

    def note(self, folder: Path, names: Iterable[str]) -> None:
        for name in names:
            found = stamp(folder / name)
            if found is None:
                self.files.pop(name, None)
            else:
                self.files[name] = found


def read_record(folder: Path, context: str) -> PublishRecord | None:
    """The folder's record if it was made under this context, else None."""
    try:
        data = json.loads((folder / RECORD_NAME).read_bytes())
        if data.get("format") != FORMAT or data.get("context") != context:
            return None
        files = {str(k): (int(v[0]), int(v[1]), int(v[2])) for k, v in data["files"].items()}
        archives = {str(k): int(v) for k, v in data["archives"].items()}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return PublishRecord(context, files, archives)


def write_record(folder: Path, record: PublishRecord) -> None:
    # Imported here: a command with nothing to publish only looks for temp_left.
    from aggregator.files import write_if_changed

    data = {
        "format": FORMAT,
        "context": record.context,
        "files": {k: list(v) for k, v in sorted(record.files.items())},
        "archives": dict(sorted(record.archives.items())),
    }
    encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    write_if_changed(folder / RECORD_NAME, encoded, sync_dir=False)


def temp_left(folder: Path) -> bool:
    """Whether a publish killed while writing its record left the record's temp file.
    The record is written after the feeds' marks are cleared, so the next command finds
    nothing to publish: it must still finish that publish (remove the temp file)."""
    prefix = f".{RECORD_NAME}."
    try:
        return any(n.startswith(prefix) and n.endswith(".tmp") for n in os.listdir(folder))
    except OSError:
        return False
