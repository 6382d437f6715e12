"""Atomic file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

LOCK_NAME = ".publish.lock"  # see FolderLock
# stage_if_changed's temp files: "." + the file's name, the writer's pid, mkstemp's 8 characters
# (older versions wrote no pid).
TEMP_NAME = re.compile(r"\..+?(\.\d+)?\.[a-z0-9_]{8}\.tmp")


def write_if_changed(
    path: Path, data: bytes, *, sync_dir: bool = True, keep_attributes: bool = False
) -> bool:
    """Write data to path atomically unless it already holds exactly that.

    Returns True when the file was (re)written. Temp file in the same folder,
    fsync, rename, fsync of the folder: survives a kill at any point. The new
    file is world-readable, or, with keep_attributes, has the old file's mode
    and (when we may set it) owner: a config file of mode 600 stays private.
    """
    temp = stage_if_changed(path, data, keep_attributes=keep_attributes)
    if temp is None:
        return False
    install(temp, path, sync_dir=sync_dir)
    return True


def stage_if_changed(path: Path, data: bytes, *, keep_attributes: bool = False) -> Path | None:
    """The first half of write_if_changed: data in a temp file beside path, fsynced;
    None when path already holds exactly that."""
    old: os.stat_result | None = None
    try:
        old = path.stat()
        if old.st_size == len(data) and path.read_bytes() == data:
            return None
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name tells whose it was, to anyone looking.
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_attributes and old is not None:
            _copy_attributes(old, temp_name)
        else:
            os.chmod(temp_name, 0o644)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return Path(temp_name)


def _copy_attributes(old: os.stat_result, temp_name: str) -> None:
    os.chmod(temp_name, old.st_mode & 0o7777)
    if (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.chown(temp_name, old.st_uid, old.st_gid)


def install(temp: Path, path: Path, *, sync_dir: bool = True) -> None:
    """The second half: the temp file renamed over path (and the folder fsynced)."""
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def start_pool(workers: int) -> ThreadPoolExecutor:
    """A pool for Writer whose threads all start now: started lazily they would appear
    one by one over the first publishes, which looks like a leak to a thread count."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="write")
    barrier = threading.Barrier(workers + 1)
    for _ in range(workers):
        pool.submit(barrier.wait, 10.0)
    barrier.wait(10.0)
    return pool


class Writer:
    """write_if_changed for many files, the slow half (writing and fsyncing the temp
    files) on a pool's threads, so their fsyncs wait for the disk together while the
    caller renders the next document; the renames stay in the caller's order, so a
    file written after another never appears before it (an archive page before the
    page it links to). At most ``pending`` files are in flight, so memory stays
    bounded. One Writer per publish; drain() waits for all of them."""

    def __init__(self, pool: ThreadPoolExecutor, *, pending: int = 16) -> None:
        self._pool = pool
        self._limit = pending
        self._futures: deque[tuple[Path, Future[Path | None]]] = deque()
        self._written: list[Path] = []

    def write(self, path: Path, data: bytes) -> None:
        while len(self._futures) >= self._limit:
            self._install_oldest()
        self._futures.append((path, self._pool.submit(stage_if_changed, path, data)))

    def _install_oldest(self) -> None:
        path, future = self._futures.popleft()
        temp = future.result()  # re-raises the writer's exception here
        if temp is not None:
            install(temp, path, sync_dir=False)
            self._written.append(path)

    def drain(self) -> list[Path]:
        """Install every file given so far; the paths that were (re)written, in order."""
        while self._futures:
            self._install_oldest()
        written, self._written = self._written, []
        return written

    def sync_dirs(self, paths: Iterable[Path]) -> None:
        """sync_dirs, the folders' fsyncs waiting for the disk together."""
        folders = sorted({p.parent for p in paths})
        list(self._pool.map(_fsync_dir, folders))

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        # Left by an exception: no write of this publish still running, no temp file left.
        while self._futures:
            future = self._futures.popleft()[1]
            if future.exception() is None and (temp := future.result()) is not None:
                temp.unlink(missing_ok=True)


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


class FolderLock:
    """The right to write in an output folder: an exclusive lock on LOCK_NAME in it,
    held by every publish from start to end (blocking: publishes take turns). Besides
    ordering the writers, it tells the holder that every temp file in the folder is a
    killed writer's: nobody else can be writing there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: BinaryIO | None = None

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_NAME, "ab")  # closed in __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def remove_temps(folder: Path) -> int:
    """Delete the temp files killed writers left in folder (stage_if_changed's names), to be
    called holding the folder's FolderLock. A process killed between creating its temp
    file and renaming it leaves the temp file: nobody serves it (a dot file), but it
    would pile up. Returns how many were removed."""
    removed = 0
    for temp in folder.rglob(".*.tmp"):
        if TEMP_NAME.fullmatch(temp.name) and temp.is_file():
            temp.unlink(missing_ok=True)
            removed += 1
    return removed
