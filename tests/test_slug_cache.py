"""Slugs of names without a pinned one are worked out once and kept beside the database
(in the database, for PostgreSQL): later commands load neither jieba nor pypinyin, and a
kept slug does not move."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import load_config, slugs_file
from aggregator.store import open_store, slug_shelf
from tests.conftest import run_aggregator

SOURCE = {
    "id": "a",
    "name": "要闻",
    "url": "http://127.0.0.1:9/a.xml",
    "category": "三秦都市报",
    "tags": ["三秦都市报新闻", "交通"],
}


def segmenters_loaded(config: Path) -> dict[str, Any]:
    """Load the config in a fresh interpreter: its slugs, and whether the segmenters
    were imported to make them."""
    code = (
        "import json, sys\n"
        "from aggregator.config.loader import load_config\n"
        "from aggregator.store import slug_shelf\n"
        "config = load_config(sys.argv[1], slug_shelf_at=slug_shelf)\n"
        "print(json.dumps({'tags': {n: t.slug for n, t in config.tags.items()},\n"
        "    'loaded': sorted(m for m in ('jieba', 'pypinyin') if m in sys.modules)}))\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=root,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_first_load_keeps_the_slugs_and_later_ones_need_no_segmenter(
    write_config: Any,
) -> None:
    config = write_config([SOURCE])
    first = segmenters_loaded(config)
    assert first["loaded"] == ["jieba", "pypinyin"]
    assert first["tags"] == {"三秦都市报新闻": "sanqin-dushibao-xinwen", "交通": "jiaotong"}
    kept = json.loads(slugs_file(load_config(config).settings.database).read_text("utf-8"))
    assert kept["交通"] == "jiaotong"

    again = segmenters_loaded(config)
    assert again == {"tags": first["tags"], "loaded": []}


def test_a_new_name_is_worked_out_and_added(write_config: Any) -> None:
    config = write_config([SOURCE])
    load_config(config)
    config = write_config([{**SOURCE, "tags": ["三秦都市报新闻", "交通", "城市"]}])
    assert segmenters_loaded(config)["tags"]["城市"] == "chengshi"
    kept = json.loads(slugs_file(load_config(config).settings.database).read_text("utf-8"))
    assert kept["城市"] == "chengshi"
    assert segmenters_loaded(config)["loaded"] == []


def test_a_kept_slug_stays_whatever_the_segmenter_says_now(write_config: Any) -> None:
    """What was published under a slug stays there (a newer jieba might cut the words
    differently); a name missing from the file is worked out again."""
    config = write_config([SOURCE])
    database = load_config(config).settings.database
    slugs_file(database).write_text(
        json.dumps({"三秦都市报新闻": "sanqindushibao-xinwen", "交通": "sanqindushibao"}), "utf-8"
    )
    loaded = load_config(config)
    assert loaded.tags["三秦都市报新闻"].slug == "sanqindushibao-xinwen"
    assert loaded.tags["交通"].slug == "sanqindushibao"
    assert loaded.categories["三秦都市报"].slug == "sanqin-dushibao"  # worked out again


def test_a_kept_slug_that_could_leave_the_folder_is_not_used(write_config: Any) -> None:
    config = write_config([SOURCE])
    database = load_config(config).settings.database
    slugs_file(database).write_text(json.dumps({"交通": "../../etc"}), "utf-8")
    assert load_config(config).tags["交通"].slug == "jiaotong"
    slugs_file(database).write_text("not json", "utf-8")
    assert load_config(config).tags["交通"].slug == "jiaotong"


def test_a_database_folder_that_cannot_be_written_only_costs_the_segmenter(
    write_config: Any, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the database folder would be", "utf-8")
    config = write_config([SOURCE], database=str(blocked / "data" / "test.db"))
    assert load_config(config).tags["交通"].slug == "jiaotong"
    done = run_aggregator("config", "check", "--config", str(config))
    assert done.returncode == 0, done.stderr


def kept_in(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, slug FROM known_slugs").fetchall())


def test_a_postgresql_database_keeps_the_slugs_for_every_node(
    write_config: Any, postgres_url: str, tmp_path: Path
) -> None:
    open_store(postgres_url).close()  # made, as the first command's store makes it
    config = write_config([SOURCE], database=postgres_url)
    first = segmenters_loaded(config)
    assert first["loaded"] == ["jieba", "pypinyin"]
    assert kept_in(postgres_url)["交通"] == "jiaotong"
    assert segmenters_loaded(config) == {"tags": first["tags"], "loaded": []}
    # Another node: its own config file, the same database.
    other = tmp_path / "other" / "sources.toml"
    other.parent.mkdir()
    other.write_text(config.read_text("utf-8"), "utf-8")
    assert segmenters_loaded(other) == {"tags": first["tags"], "loaded": []}


def test_a_slug_kept_in_postgresql_wins_and_a_bad_one_is_worked_out_again(
    write_config: Any, postgres_url: str
) -> None:
    import psycopg

    open_store(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "INSERT INTO known_slugs (name, slug) VALUES (%s, %s), (%s, %s)",
            ["交通", "traffic", "三秦都市报新闻", "../x"],
        )
    config = write_config([SOURCE], database=postgres_url)
    loaded = load_config(config, slug_shelf_at=slug_shelf)
    assert loaded.tags["交通"].slug == "traffic"
    assert loaded.tags["三秦都市报新闻"].slug == "sanqin-dushibao-xinwen"
    # The bad one is replaced by the slug worked out; the good one stays.
    kept = kept_in(postgres_url)
    assert (kept["交通"], kept["三秦都市报新闻"]) == ("traffic", "sanqin-dushibao-xinwen")


def test_slugs_are_kept_before_the_store_is_made(write_config: Any, postgres_url: str) -> None:
    """`aggregator config check` on a new database keeps them; the store is made after."""
    config = write_config([SOURCE], database=postgres_url)
    assert load_config(config, slug_shelf_at=slug_shelf).tags["交通"].slug == "jiaotong"
    assert kept_in(postgres_url)["交通"] == "jiaotong"
    with open_store(postgres_url) as store:  # the migrations find the table made
        assert store.source_states([]) == {}
    assert segmenters_loaded(config)["loaded"] == []
    assert slug_shelf("sqlite-file.db") is None and slug_shelf("nosuch://x") is None


def test_a_postgresql_server_that_does_not_answer_only_costs_the_segmenter(
    write_config: Any,
) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    unreachable = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens on port 9
    config = write_config([SOURCE], database=unreachable)
    assert load_config(config, slug_shelf_at=slug_shelf).tags["交通"].slug == "jiaotong"
    shelf = slug_shelf(unreachable)
    assert shelf is not None
    known = shelf.read()
    assert known.slugify("交通") == "jiaotong"
    shelf.keep(known)  # not asked again: a down server costs one connection attempt
    assert shelf._unreachable  # type: ignore[attr-defined]
