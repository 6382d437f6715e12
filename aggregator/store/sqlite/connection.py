"""The SQLite connection: settings, the schema brought up to date, write transactions
(one ``BEGIN IMMEDIATE`` each, or several committed as one batch), the write lock
shared by processes, and sqlite3's errors turned into StoreError at the door."""

from __future__ import annotations

import fcntl
import functools
import inspect
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar

from aggregator.errors import BatchFailed, StoreError
from aggregator.store.records import FeedKey
from aggregator.store.sqlite.schema import SCHEMA_VERSION
from aggregator.store.sqlite.schema import create as create_schema

if TYPE_CHECKING:
    import sqlite_utils

# WAL pages written before a commit copies them back into the database file: a first
# poll rewrites the same index pages again and again, and each checkpoint at SQLite's
# default (1000) copied and fsynced them once more. 256 MB of WAL at most in 16 KB
# pages (PAGE_SIZE), 64 MB in 4 KB ones.
WAL_CHECKPOINT_PAGES = 16_000
# Once a checkpoint has emptied the WAL, its file is cut back to this size.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
# During bulk writes (Connection.bulk_writes), how often the checkpointing thread copies
# what the WAL holds into the database.
BULK_CHECKPOINT_EVERY = 0.3  # seconds
# The page size of a new database (one made before keeps its own: SQLite cannot change
# it in WAL mode). An entry row carries a 2-4 KB body, often more than a 4 KB page
# (SQLite's default) holds, so each spilled onto an overflow page of its own; in 16 KB
# pages a few rows share one.
PAGE_SIZE = 16 * 1024

P = ParamSpec("P")
R = TypeVar("R")


class Connection:
    """One connection per store, shared by threads behind a lock."""

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self.conn = conn
        self._lock = threading.RLock()
        self._keys_seen: tuple[int, frozenset[FeedKey]] | None = None  # see feed_keys
        self._batch: _Batch | None = None  # the batch under way (see batch)
        self._pruned_day: str | None = None  # see record_polls
        self._write_lock: BinaryIO | None = None
        try:
            self._write_lock = _open_write_lock(self.path)
            self._set_up(conn)
        except (sqlite3.DatabaseError, OSError) as exc:  # not a database, say
            self.close()
            raise StoreError(f"cannot use database {self.path}: {exc}") from None

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """The connection as sqlite-utils wraps it, made on first use: importing
        sqlite-utils is much of a command's start-up, and a command with nothing to
        do (a cron poll with nothing due) reads and writes through plain sqlite3."""
        import sqlite_utils

        # No plugins: nothing installed alongside may change our connection, and looking
        # for them scans every installed package's entry points.
        return sqlite_utils.Database(self.conn, execute_plugins=False)

    @property
    def database(self) -> str:
        """What open_store takes to open this database again (in another process)."""
        return str(self.path)

    def _set_up(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before anything is written
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: every commit survives a process kill; only an OS
        # crash could lose the last transactions.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        # Only a database made before identity scopes has old codes to look up.
        self._has_legacy_codes = conn.execute("SELECT 1 FROM legacy_codes LIMIT 1").fetchone()

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """While many transactions are committed back to back (a large first poll), a
        thread of its own copies the WAL into the database every BULK_CHECKPOINT_EVERY
        seconds. Each copy and its fsyncs then overlap the writes instead of holding the
        writer when the WAL is full, and closing the store, which copies whatever the
        WAL still holds, has little left to do."""
        checkpointer = Checkpointer(self.path, BULK_CHECKPOINT_EVERY)
        checkpointer.start()
        try:
            yield
        finally:
            checkpointer.stop()

    def can_write_now(self) -> bool:
        """Whether no other process holds the write lock (see _open_write_lock)."""
        lock = self._write_lock
        if lock is None:
            return True
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            if self._write_lock is not None:
                self._write_lock.close()
                self._write_lock = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction; rolled back whole on any exception. Opened inside a
        batch, it is part of the batch's transaction (see batch)."""
        with self.writing():
            yield self.db

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """transaction() on the plain sqlite3 connection."""
        with self._lock:
            if self._batch is not None:
                try:
                    yield self.conn
                except BaseException:
                    self._batch.failed = True
                    raise
                return
            with _held(self._write_lock):
                conn = self.conn
                with _door("cannot begin a transaction"):
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                with _door("cannot commit"):
                    try:
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:  # a failed COMMIT may leave it open
                            conn.execute("ROLLBACK")
                        raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several transactions committed as one: one commit (its WAL writes, its
        lock) instead of one each. All or nothing: if any of them fails, even one
        whose caller went on, the whole batch is rolled back and BatchFailed raised,
        for the caller to do each alone. (A savepoint each would keep the others,
        but costs a copy of every page it changes.)"""
        with self._lock:
            if self._batch is not None:
                raise StoreError("batches do not nest")
            with self.writing():
                self._batch = _Batch()
                try:
                    yield
                finally:
                    failed, self._batch = self._batch.failed, None
                if failed:
                    raise BatchFailed("a transaction in the batch failed")

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.conn.execute(sql, params)
            columns = [c[0] for c in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor]

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """A new database gets the current schema at once; an older one is upgraded
        step by step; a newer one is refused."""
        if self.schema_version == SCHEMA_VERSION:
            return  # the common case, read without a write transaction
        with self.writing() as conn:
            version = self.schema_version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema {version}, newer than this program's "
                    f"{SCHEMA_VERSION}: upgrade aggregator"
                )
            tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone()
            if version == 0 and not tables:
                # Plain sqlite3: a first poll forks its workers without loading sqlite-utils.
                create_schema(conn)
            else:
                from aggregator.store.sqlite.migrations import MIGRATIONS  # only to upgrade

                for number in range(version, SCHEMA_VERSION):
                    MIGRATIONS[number](self.db)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextmanager
def _door(doing: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{doing}: {exc}") from exc


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def door(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"{method.__name__}: {exc}") from exc

    return door


def storage_errors(cls: type[R]) -> type[R]:
    """Make every public method of a store class raise StoreError where sqlite3 raised
    its own error: nothing outside the store catches sqlite3's errors. (transaction
    and batch turn theirs at BEGIN and COMMIT; their bodies call guarded methods.)"""
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_") and name not in ("transaction", "batch"):
            setattr(cls, name, _guarded(member))
    return cls


def _open_write_lock(database: Path) -> BinaryIO | None:
    """A file beside the database that writers lock in turn. SQLite itself makes a
    writer that finds the database busy sleep and retry (for up to 100 ms a time), which
    wastes most of the time when several processes write often (poll worker processes,
    a daemon and a command); a blocking file lock hands over at once."""
    try:
        return open(database.with_name(database.name + ".write-lock"), "ab")
    except OSError:  # a read-only folder: SQLite's own locking still applies
        return None


@dataclass
class _Batch:
    failed: bool = False


class Checkpointer:
    """A thread with a connection of its own that checkpoints a WAL database (PASSIVE:
    it copies the transactions already committed, never waiting for a writer nor
    making one wait) every `every` seconds until stopped. Upkeep only: a checkpoint that
    fails is left to the next one, or to SQLite's own when the WAL fills up."""

    def __init__(self, path: Path, every: float) -> None:
        self.path = path
        self.every = every
        self.passes = 0
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames copied)
        self._passed = threading.Condition()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def wait_for_passes(self, count: int, timeout: float) -> bool:
        """Whether `count` checkpoints have been made, waiting up to `timeout` seconds."""
        with self._passed:
            return self._passed.wait_for(lambda: self.passes >= count, timeout)

    def _run(self) -> None:
        try:
            # mode=rw: a database that is gone is not made anew here.
            uri = self.path.resolve().as_uri() + "?mode=rw"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # as the writers': a copy is fsynced
            while not self._stopped.wait(self.every):
                self.checkpoint(conn)
        except sqlite3.Error:
            pass  # the database went away under us (a test's folder): nothing to keep up
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:  # locked by a writer's own checkpoint, say
            return
        with self._passed:
            self.passes += 1
            self.last = (busy, frames, copied)
            self._passed.notify_all()


@contextmanager
def _held(lock: BinaryIO | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
