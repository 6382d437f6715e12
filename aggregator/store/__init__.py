"""Persistence: the storage interface, its records, the backend chosen by open_store,
and retention."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from aggregator.errors import StoreError
from aggregator.store.interface import Storage

# Each backend is a module with open_storage(database, timeout=...) and
# carriers_of(database, codes), imported only when chosen: a SQLite file by default,
# a URL by its scheme.
_SQLITE = "aggregator.store.sqlite"
_URL_BACKENDS: dict[str, str] = {}
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
    module = importlib.import_module(_backend(database))
    return cast(Storage, module.open_storage(database, timeout=timeout))


def carriers_of(database: str | Path, codes: Sequence[str]) -> dict[str, list[str]]:
    """The sources storing each of these codes, read without writing or upgrading
    anything: {} where there is no store (yet) or it cannot be read."""
    module = importlib.import_module(_backend(database))
    return cast(dict[str, list[str]], module.carriers_of(database, codes))
