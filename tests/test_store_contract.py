"""The storage contract (tests/storage_contract.py) on the SQLite backend, through
open_store. Another backend runs the same tests by adding its factory to BACKENDS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aggregator.errors import StoreError
from aggregator.store import open_store
from aggregator.store.interface import Storage
from tests.storage_contract import *  # noqa: F403  (the contract's tests, collected here)

# A backend: where a new, empty store lives, given a test's own folder.
BACKENDS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda folder: str(folder / "contract.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def storage(database: str) -> Iterator[Storage]:
    with open_store(database) as store:
        yield store


@pytest.fixture
def reopen(database: str) -> Callable[[], Storage]:
    return lambda: open_store(database)


def test_a_file_that_is_not_a_database_raises_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "not.db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError):
        open_store(tmp_path / "not.db")


def test_a_database_url_without_a_backend_raises_a_store_error() -> None:
    with pytest.raises(StoreError, match="no storage backend"):
        open_store("nosuch://localhost/db")
