"""Persistence: the storage interface, its records, the backend chosen by open_store,
and retention."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aggregator.errors import StoreError
from aggregator.store.cluster import ClusterState
from aggregator.store.interface import Storage

if TYPE_CHECKING:
    from aggregator.config.loader import SlugShelf

# Each backend is a module with open_storage(database, timeout=...),
# carriers_of(database, codes) and copy_side(database, write=...) (migrate-store),
# and, if it keeps a config's slugs itself, slug_shelf(database),
# imported only when chosen: a SQLite file by default, a URL by its scheme. A backend
# that can share the work between nodes has open_cluster(database) too.
_SQLITE = "aggregator.store.sqlite"
_POSTGRES = "aggregator.store.postgres"
_URL_BACKENDS: dict[str, str] = {"postgresql": _POSTGRES, "postgres": _POSTGRES}
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")


def _backend(database: str | Path) -> str:
    url = _URL.match(str(database))
    if url is None:
        return _SQLITE
    scheme = url.group(1).lower()
    if scheme not in _URL_BACKENDS:
        raise StoreError(f"no storage backend for {scheme}:// databases")
    return _URL_BACKENDS[scheme]


def open_store(database: str | Path, *, timeout: float = 30.0) -> Storage:
    """The store at `database` (a file path: SQLite), made or upgraded as needed."""
    return cast(Storage, _backend_module(database).open_storage(database, timeout=timeout))


def _backend_module(database: str | Path) -> Any:
    backend = _backend(database)
    try:
        return importlib.import_module(backend)
    except ImportError as exc:  # an optional backend: its extra has its name
        name = backend.rpartition(".")[2]
        raise StoreError(
            f"the {name} backend is not installed ({exc}): pip install 'aggregator[{name}]'"
        ) from None


def slug_shelf(database: str) -> SlugShelf | None:
    """Where the slugs of a database URL's config are kept, if its backend keeps them
    (PostgreSQL: in the database, for every node); config.loader.load_config's
    slug_shelf_at."""
    try:
        shelf_at = getattr(_backend_module(database), "slug_shelf", None)
    except StoreError:  # no such backend, or not installed: opening the store says so
        return None
    return cast("SlugShelf | None", shelf_at(database)) if shelf_at else None


def backend_name(database: str | Path) -> str:
    """Which backend keeps the store at `database` (its module's last name)."""
    return _backend(database).rpartition(".")[2]


def open_cluster(database: str | Path) -> ClusterState:
    """The cluster's shared state (nodes, accepted config, per-host slots) in the
    database at `database`: StoreError where its backend cannot share the work."""
    module = _backend_module(database)
    if not hasattr(module, "open_cluster"):
        raise StoreError(f"a cluster of nodes needs a PostgreSQL database, not {database}")
    return cast(ClusterState, module.open_cluster(str(database)))


def carriers_of(database: str | Path, codes: Sequence[str]) -> dict[str, list[str]]:
    """The sources storing each of these codes, read without writing or upgrading
    anything: {} where there is no store (yet) or it cannot be read."""
    module = _backend_module(database)
    return cast(dict[str, list[str]], module.carriers_of(database, codes))
