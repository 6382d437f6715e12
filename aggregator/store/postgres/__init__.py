"""The PostgreSQL backend (psycopg 3): the store of a cluster of nodes, chosen by
aggregator.store.open_store for postgresql:// (and postgres://) URLs. The
only package that imports psycopg."""

from __future__ import annotations

from pathlib import Path

from aggregator.store.postgres.cluster import open_cluster
from aggregator.store.postgres.copy import copy_side
from aggregator.store.postgres.store import PostgresStore, carriers_of


def open_storage(database: str | Path, *, timeout: float = 30.0) -> PostgresStore:
    """The store in this PostgreSQL database, made or upgraded to the current schema."""
    return PostgresStore(str(database), timeout=timeout)


__all__ = ["PostgresStore", "carriers_of", "copy_side", "open_cluster", "open_storage"]
