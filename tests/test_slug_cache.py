"""Slugs of names without a pinned one are worked out once and kept beside the database:
later commands load neither jieba nor pypinyin, and a kept slug does not move."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from aggregator.config.loader import load_config, slugs_file
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
        "config = load_config(sys.argv[1])\n"
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
