"""The storage contract (tests/storage_contract.py) on every backend, through
open_store: SQLite, and PostgreSQL on a real server (tests/pg.py: a schema per test;
skipped where none answers, failed instead under AGGREGATOR_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aggregator.errors import StoreError
from aggregator.store import open_store, slug_shelf
from aggregator.store.interface import Storage
from tests.storage_contract import *  # noqa: F403  (the contract's tests, collected here)

# A backend: where a new, empty store lives, given the test's request and own folder.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": lambda request, folder: str(folder / "contract.db"),
    "postgres": lambda request, folder: str(request.getfixturevalue("postgres_url")),
}


@pytest.fixture(params=sorted(BACKENDS))
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](request, tmp_path)


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


def test_a_backend_whose_extra_is_not_installed_is_a_store_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A postgresql:// database without `pip install 'aggregator[postgres]'`: said
    plainly (the CLI prints it and exits 3), never an ImportError's traceback."""
    for name in [m for m in sys.modules if m.startswith("aggregator.store.postgres")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails
    with pytest.raises(StoreError, match=r"aggregator\[postgres\]"):
        open_store("postgresql://nobody@127.0.0.1:9/none")
    assert slug_shelf("postgresql://nobody@127.0.0.1:9/none") is None
