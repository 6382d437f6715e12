"""A real PostgreSQL server for tests: a fresh database per test session (per pytest-xdist
worker), dropped after, and a fresh schema in it per test.

The server is AGGREGATOR_TEST_POSTGRES (default: postgresql://postgres@127.0.0.1:5432/postgres,
the development machines' server with trust authentication). Where none answers, the tests
that need it skip saying so, and fail instead under AGGREGATOR_REQUIRE_SERVICES=1 (as
.ci/run sets), so CI never passes without them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.browser import unavailable

SERVER = os.environ.get("AGGREGATOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_url(database: str) -> str:
    base, _, _ = SERVER.rpartition("/")
    return f"{base}/{database}"


def with_schema(url: str, schema: str) -> str:
    """The URL of a database whose connections work in one schema (search_path)."""
    options = quote(f"-c search_path={schema}")
    return f"{url}{'&' if '?' in url else '?'}options={options}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database made for this test session, dropped at its end."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    name = f"aggregator_test_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(SERVER, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable(f"no PostgreSQL server at {SERVER}: {str(exc).strip()}")
    try:
        yield _admin_url(name)
    finally:
        with psycopg.connect(SERVER, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """The URL of an empty schema made for one test, dropped after it."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(postgres_database, schema)
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
