from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.run.fulltext import PROCESS_CACHE
from tests.feedserver import FeedServer
from tests.pg import postgres_database, postgres_url  # noqa: F401 (fixtures: a real PostgreSQL)


@pytest.fixture(autouse=True)
def _empty_article_cache() -> None:
    """Every test starts with an empty process-wide article cache (run.fulltext). A test
    server on a port an earlier test's server had would otherwise find that test's
    articles there, for entries alike, and ask for none."""
    PROCESS_CACHE.clear()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    instance = FeedServer()
    import threading

    thread = threading.Thread(target=instance.serve_forever, daemon=True)
    thread.start()
    yield instance
    instance.shutdown()
    instance.server_close()


def run_aggregator(
    *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m aggregator ARGS` as an operator runs it: a real process; its exit status,
    stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env},
    )


class Clock:
    """An injected clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def config_text(sources: list[dict[str, Any]], **settings: Any) -> str:
    lines = ["[settings]"]
    for key, value in settings.items():
        lines.append(f"{key} = {toml_value(value)}")
    for source in sources:
        lines.append("")
        lines.append("[[sources]]")
        for key, value in source.items():
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    """write_config(sources, **settings) -> path of a config file in a fresh project folder."""

    def write(sources: list[dict[str, Any]], **settings: Any) -> Path:
        folder = tmp_path / "project" / "config"
        folder.mkdir(parents=True, exist_ok=True)
        settings.setdefault("database", str(tmp_path / "project" / "data" / "test.db"))
        settings.setdefault("output_dir", str(tmp_path / "project" / "feeds"))
        settings.setdefault("base_url", "http://feeds.example.org")
        path = folder / "sources.toml"
        path.write_text(config_text(sources, **settings), encoding="utf-8")
        return path

    return write
