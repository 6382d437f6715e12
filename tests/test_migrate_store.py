"""`aggregator migrate-store`: SQLite into PostgreSQL and back, run as an operator runs it
(a real process, a real server: tests/pg.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from aggregator.config.loader import slugs_file
from aggregator.publish.publisher import Publisher
from aggregator.store import open_store, slug_shelf
from aggregator.store.copy import TABLES
from tests.conftest import run_aggregator
from tests.publishing import SOURCES
from tests.test_postgres_store import _config, _files, _polls


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_sqlite_to_postgres_and_back(tmp_path: Path, postgres_url: str) -> None:
    first = tmp_path / "first.db"
    config = _config(tmp_path, "site", str(first), SOURCES)
    with open_store(first) as store:
        store.sync_sources(config.sources)
        _polls(store, config)
        Publisher(config, store).publish()
    published = _files(config.settings.output_dir)
    before = _counts(first)
    slugs_file(first).write_text(json.dumps({"交通": "traffic"}), "utf-8")
    assert before["entries"] > 0 and before["feed_positions"] > 0

    for attempt in range(2):  # again: nothing is duplicated
        done = run_aggregator(
            "migrate-store", "--config", str(config.path), str(first), postgres_url
        )
        assert done.returncode == 0, done.stderr
        assert "MISMATCH" not in done.stdout
        assert f"entries: {before['entries']} -> {before['entries']}" in done.stdout, attempt
        assert "differing: 0" in done.stdout
        assert "entries:" in done.stderr  # the progress

    # The slugs kept beside the file go with it, and come back.
    kept = slug_shelf(postgres_url).read().known  # type: ignore[union-attr]
    assert kept["交通"] == "traffic"
    back = tmp_path / "back.db"
    done = run_aggregator("migrate-store", "--config", str(config.path), postgres_url, str(back))
    assert done.returncode == 0, done.stderr
    assert _counts(back) == before
    assert json.loads(slugs_file(back).read_text("utf-8")) == kept

    # What the copy publishes, from a fresh output folder, is what the original did.
    with open_store(postgres_url) as store:
        fresh = _config(tmp_path, "copy", postgres_url, SOURCES)
        Publisher(fresh, store).publish()  # type: ignore[arg-type]
    assert _files(fresh.settings.output_dir) == published


def test_refuses_two_stores_of_one_kind(tmp_path: Path) -> None:
    config = _config(tmp_path, "site", str(tmp_path / "a.db"), SOURCES)
    done = run_aggregator(
        "migrate-store",
        "--config",
        str(config.path),
        str(tmp_path / "a.db"),
        str(tmp_path / "b.db"),
    )
    assert done.returncode == 2
    assert "SQLite file and a PostgreSQL database" in done.stderr
