"""Atomic file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

STALE_AFTER = 3600.0  # a temp file without a known writer older than this is litter


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
    # The writer's pid in the name tells a later start whose temp file it was.
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
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


class Writer:
    """write_if_changed (without the folder fsync) on a few threads: the fsyncs of
    many files wait for the disk together instead of one after another, while the
    caller renders the next document. At most ``pending`` writes are in flight, so
    memory stays bounded; drain() waits for all of them."""

    def __init__(
        self,
        write: Callable[..., bool] = write_if_changed,
        *,
        workers: int = 4,
        pending: int = 16,
    ) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="write")
        self._limit = pending
        self._futures: deque[tuple[Path, Future[bool]]] = deque()
        self._written: list[Path] = []

    def write(self, path: Path, data: bytes) -> None:
        while len(self._futures) >= self._limit:
            self._collect_oldest()
        future = self._pool.submit(self._write, path, data, sync_dir=False)
        self._futures.append((path, future))

    def _collect_oldest(self) -> None:
        path, future = self._futures.popleft()
        if future.result():  # re-raises the writer's exception here
            self._written.append(path)

    def drain(self) -> list[Path]:
        """Wait for every write given so far; the paths that were (re)written, in order."""
        while self._futures:
            self._collect_oldest()
        written, self._written = self._written, []
        return written

    def close(self) -> None:
        try:
            while self._futures:  # let every started write finish (or fail) first
                self._futures.popleft()[1].exception()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def _writer_gone(temp: Path, now: float) -> bool:
    """Whether no running process can still be writing this temp file."""
    parts = temp.name.rsplit(".", 3)  # "." + name, pid, random, "tmp"
    if len(parts) == 4 and parts[1].isdigit():
        pid = int(parts[1])
        if pid == os.getpid():
            return True  # a process that had our pid before us, long dead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False
    try:
        return now - temp.stat().st_mtime > STALE_AFTER
    except FileNotFoundError:
        return False


def remove_stale_temps(folder: Path) -> int:
    """Delete the temp files killed writers left behind (.<name>.<pid>.<random>.tmp).

    A process killed between creating its temp file and renaming it leaves
    the temp file; nobody serves it (a dot file) but it would pile up.
    Returns how many were removed.
    """
    removed = 0
    now = time.time()
    for temp in folder.rglob(".*.tmp"):
        if temp.is_file() and _writer_gone(temp, now):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed
