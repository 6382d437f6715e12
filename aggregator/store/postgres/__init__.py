"""The PostgreSQL backend (psycopg 3): the store of a cluster of nodes, chosen by
aggregator.store.open_store for postgresql:// (and postgres://) URLs. The
only package that imports psycopg."""

from __future__ import annotations

from pathlib import Path

from aggregator.store.cluster import ClusterState
from aggregator.store.postgres.copy import copy_side
from aggregator.store.postgres.slugs import PostgresSlugs
from aggregator.store.postgres.store import PostgresStore, carriers_of


def open_storage(database: str | Path, *, timeout: float = 30.0) -> PostgresStore:
    """The store in this PostgreSQL database, made or upgraded to the current schema."""
    return PostgresStore(str(database), timeout=timeout)


def open_cluster(database: str | Path) -> ClusterState:
    """The cluster's shared state in this database (aggregator.store.open_cluster).
    procrastinate is imported only here: a single node's commands do without it."""
    from aggregator.store.postgres.cluster import open_cluster as cluster_in

    return cluster_in(str(database))


def slug_shelf(database: str) -> PostgresSlugs:
    """The slugs of this database's config, kept in the database (aggregator.store)."""
    return PostgresSlugs(database)


__all__ = [
    "PostgresStore",
    "carriers_of",
    "copy_side",
    "open_cluster",
    "open_storage",
    "slug_shelf",
]
