"""What a cluster of nodes keeps in its shared database besides the store: each node's
heartbeat, the accepted config, the per-host politeness slots, the job engine's
connection. aggregator.run.cluster decides with these; a backend that can share the
work (aggregator.store.postgres) implements ClusterState, got from
aggregator.store.open_cluster. Errors are StoreError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self


@dataclass(frozen=True)
class NodeRecord:
    """A node's row: who it is, when it was last heard of, what it was doing."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    polls_in_flight: int
    config_digest: str
    stopped_at: datetime | None = None


@dataclass(frozen=True)
class AcceptedConfig:
    """The config the cluster polls by: its digest, numbered, and who made it so."""

    version: int
    digest: str
    accepted_by: str


class ClusterState(Protocol):
    """The shared state of a cluster's nodes, in their database."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def job_connector(self) -> Any:
        """A connector for the job engine (procrastinate) to this database."""

    def ensure_job_schema(self, ddl: str) -> None:
        """Make the job engine's tables from its ddl, once, whichever node comes first."""

    def pending_jobs(self, task: str) -> set[str]:
        """The queueing locks of the task's jobs waiting or running."""

    def refresh_job_statistics(self) -> None:
        """Bring the planner's statistics of the job table up to date, after queueing
        many jobs at once: until autovacuum looks (a minute, or never where it is
        off), the planner takes the table for nearly empty and every fetch of a job
        reads all the queued ones."""

    def accept_config(
        self, digest: str, node: str, now: datetime, *, replace: bool
    ) -> AcceptedConfig:
        """The accepted config after making `digest` the accepted one where there is
        none yet, or where `replace` and it differs (one change at a time)."""

    def accepted_config(self) -> AcceptedConfig | None:
        """The accepted config; None before any node ran."""

    def heartbeat(self, node: NodeRecord) -> None:
        """Write this node's row (alive: its stop cleared)."""

    def mark_stopped(self, node_id: str, now: datetime) -> None: ...

    def nodes(self) -> list[NodeRecord]:
        """Every node that ever ran against this database, by id."""

    def try_host_slot(self, host: str, slot: int) -> bool:
        """Take one of the host's politeness slots if no node (this one included)
        holds it; the database frees it if this process dies."""

    def release_host_slot(self, host: str, slot: int) -> None: ...
