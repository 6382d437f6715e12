"""Atomic file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_if_changed(path: Path, data: bytes, *, sync_dir: bool = True) -> bool:
    """Write data to path atomically unless it already holds exactly that.

    Returns True when the file was (re)written. Temp file in the same folder,
    fsync, rename, fsync of the folder: survives a kill at any point.
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(path.parent)
    return True


def sync_dirs(paths: Iterable[Path]) -> None:
    """Make the renames of files written with sync_dir=False durable: one fsync per
    folder instead of one per file."""
    for folder in sorted({p.parent for p in paths}):
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
