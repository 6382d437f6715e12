"""A cluster's shared state in its PostgreSQL database (aggregator.store.cluster):
the cluster_nodes and cluster_config tables (made with the store's schema), advisory
locks for the per-host politeness slots, and procrastinate's connector and tables."""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import procrastinate
import psycopg

from aggregator.errors import StoreError
from aggregator.store.cluster import AcceptedConfig, NodeRecord
from aggregator.store.postgres.store import connect, redacted
from aggregator.store.records import from_iso, iso

T = TypeVar("T")

CONFIG_LOCK = 0x61677232  # advisory lock taken while the accepted config or schema changes


def _host_key(host: str) -> int:
    """A host as the first key of a two-key advisory lock (a signed 32-bit integer)."""
    return zlib.crc32(host.encode()) - 2**31


def _time(value: str) -> datetime:
    parsed = from_iso(value)
    assert parsed is not None
    return parsed


class PostgresCluster:
    """ClusterState on one PostgreSQL database: one connection for the rows, and one
    whose session holds this process's host slots."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._slot_lock = threading.Lock()
        self._slots: psycopg.Connection[Any] | None = None
        self._held: set[tuple[int, int]] = set()

    def close(self) -> None:
        with self._lock, self._slot_lock:
            for conn in (self._conn, self._slots):
                if conn is not None:
                    conn.close()
            self._conn = self._slots = None
            self._held.clear()

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.url)
            try:
                return work(self._conn)
            except psycopg.Error as exc:
                raise StoreError(f"cluster state in {redacted(self.url)}: {exc}") from None

    # --- the job engine ---

    def job_connector(self) -> procrastinate.PsycopgConnector:
        return procrastinate.PsycopgConnector(conninfo=self.url, min_size=1, max_size=4)

    def ensure_job_schema(self, ddl: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [CONFIG_LOCK])
                found = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
                if found is None or found[0] is None:
                    conn.execute(ddl.encode())

        self._run(work)

    def pending_jobs(self, task: str) -> set[str]:
        rows = self._run(
            lambda conn: conn.execute(
                """SELECT DISTINCT queueing_lock FROM procrastinate_jobs
                   WHERE task_name = %s AND status IN ('todo', 'doing')""",
                [task],
            ).fetchall()
        )
        return {lock for (lock,) in rows if lock is not None}

    def refresh_job_statistics(self) -> None:
        self._run(lambda conn: conn.execute("ANALYZE procrastinate_jobs"))

    # --- the accepted config ---

    def accept_config(
        self, digest: str, node: str, now: datetime, *, replace: bool
    ) -> AcceptedConfig:
        def work(conn: psycopg.Connection[Any]) -> AcceptedConfig:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [CONFIG_LOCK])
                found = _accepted(conn)
                if found is not None and not (replace and found.digest != digest):
                    return found
                accepted = AcceptedConfig(1 if found is None else found.version + 1, digest, node)
                conn.execute(
                    """INSERT INTO cluster_config (id, version, digest, accepted_at, accepted_by)
                       VALUES (1, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET
                       version = excluded.version, digest = excluded.digest,
                       accepted_at = excluded.accepted_at, accepted_by = excluded.accepted_by""",
                    [accepted.version, digest, iso(now), node],
                )
                return accepted

        return self._run(work)

    def accepted_config(self) -> AcceptedConfig | None:
        def work(conn: psycopg.Connection[Any]) -> AcceptedConfig | None:
            exists = conn.execute("SELECT to_regclass('cluster_config')").fetchone()
            return None if exists is None or exists[0] is None else _accepted(conn)

        return self._run(work)

    # --- nodes ---

    def heartbeat(self, node: NodeRecord) -> None:
        self._run(
            lambda conn: conn.execute(
                """INSERT INTO cluster_nodes (id, host, pid, started_at, last_seen,
                     polls_in_flight, config_digest, stopped_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, NULL)
                   ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                     started_at = excluded.started_at, last_seen = excluded.last_seen,
                     polls_in_flight = excluded.polls_in_flight,
                     config_digest = excluded.config_digest, stopped_at = NULL""",
                [
                    node.id,
                    node.host or socket.gethostname(),
                    node.pid,
                    iso(node.started_at),
                    iso(node.last_seen),
                    node.polls_in_flight,
                    node.config_digest,
                ],
            )
        )

    def mark_stopped(self, node_id: str, now: datetime) -> None:
        self._run(
            lambda conn: conn.execute(
                """UPDATE cluster_nodes SET stopped_at = %s, polls_in_flight = 0
                   WHERE id = %s""",
                [iso(now), node_id],
            )
        )

    def nodes(self) -> list[NodeRecord]:
        rows = self._run(
            lambda conn: conn.execute(
                """SELECT id, host, pid, started_at, last_seen, polls_in_flight,
                          config_digest, stopped_at FROM cluster_nodes ORDER BY id"""
            ).fetchall()
        )
        return [
            NodeRecord(i, host, pid, _time(started), _time(seen), flight, digest, from_iso(stop))
            for i, host, pid, started, seen, flight, digest, stop in rows
        ]

    # --- per-host slots: session advisory locks, freed by PostgreSQL if we die ---

    def _slot_conn(self) -> psycopg.Connection[Any]:
        if self._slots is None or self._slots.closed or self._slots.broken:
            self._held.clear()  # a new session holds nothing
            self._slots = connect(self.url)
        return self._slots

    def try_host_slot(self, host: str, slot: int) -> bool:
        key = (_host_key(host), slot)
        with self._slot_lock:
            # A session takes its own advisory lock again without waiting (the locks
            # stack): a slot this process holds is not free, whatever PostgreSQL says.
            if key in self._held:
                return False
            try:
                row = (
                    self._slot_conn().execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()
                )
            except psycopg.Error as exc:
                raise StoreError(f"host slots in {redacted(self.url)}: {exc}") from None
            if row is None or not row[0]:
                return False
            self._held.add(key)
            return True

    def release_host_slot(self, host: str, slot: int) -> None:
        key = (_host_key(host), slot)
        with self._slot_lock:
            if key not in self._held:
                return
            self._held.discard(key)
            try:
                self._slot_conn().execute("SELECT pg_advisory_unlock(%s, %s)", key)
            except psycopg.Error as exc:
                raise StoreError(f"host slots in {redacted(self.url)}: {exc}") from None


def _accepted(conn: psycopg.Connection[Any]) -> AcceptedConfig | None:
    row = conn.execute(
        "SELECT version, digest, accepted_by FROM cluster_config WHERE id = 1"
    ).fetchone()
    return None if row is None else AcceptedConfig(int(row[0]), str(row[1]), str(row[2]))


def open_cluster(url: str) -> PostgresCluster:
    """The cluster state in this database; its tables are made by the store's schema
    (open the store first)."""
    return PostgresCluster(url)
