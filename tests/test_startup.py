"""A command loads what it uses: `aggregator poll` with nothing due fetches, parses,
segments and publishes nothing and reads the store through plain sqlite3, so it imports
none of that (what made every command slow to start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import run_aggregator
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

HEAVY = (
    "aggregator.fetch.fetcher",
    "aggregator.parse.feed",
    "aggregator.parse.kinds",
    "aggregator.run.fulltext",
    "aggregator.run.pollrun",
    "aggregator.publish.publisher",
    "aggregator.store.postgres",
    "feedparser",
    "pycurl",
    "gne",
    "jmespath",
    "cssselect",
    "jieba",
    "lxml",
    "pypinyin",
    "procrastinate",
    "psycopg",
    "sqlite_utils",
)
SOURCE = {
    "id": "a",
    "name": "要闻",
    "url": "http://127.0.0.1:9/a.xml",
    "category": "三秦都市报",
    "tags": ["交通"],
    "interval": "1d",
}


def imported_by(*args: str) -> list[str]:
    """Run the command in a fresh interpreter; the HEAVY modules it imported."""
    code = (
        "import json, sys\n"
        "from aggregator.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:], prog_name='aggregator')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


def test_a_poll_with_nothing_due_imports_no_fetching_parsing_or_segmenting(
    write_config: Any,
) -> None:
    config = write_config([SOURCE])
    # The first command works the slugs out; the source, never reached, now waits a day.
    first = run_aggregator("poll", "--no-publish", "--config", str(config))
    assert first.returncode == 1, first.stdout + first.stderr  # port 9 refuses
    assert imported_by("poll", "--config", str(config)) == []
    assert imported_by("poll", "--no-publish", "--config", str(config)) == []
    assert imported_by("status", "--config", str(config)) == []


TWO_ITEMS = [Item("NW1", "标题一"), Item("NW2", "标题二")]


def first_poll_imports(
    server: FeedServer, write_config: Any, *options: str
) -> tuple[list[str], Path]:
    """What `aggregator poll --all OPTIONS` imported polling a new config's one source
    (serving TWO_ITEMS) for the first time, once `config check` worked its slugs out;
    and the config."""
    url = server.set("/a.xml", rss(TWO_ITEMS))
    config = write_config([{**SOURCE, "url": url}])
    assert run_aggregator("config", "check", "--config", str(config)).returncode == 0
    loaded = imported_by("poll", "--all", *options, "--config", str(config))
    assert "feedparser" in loaded  # it did poll and parse
    return loaded, config


def test_polling_feeds_loads_nothing_for_pages_apis_full_text_or_a_cluster(
    server: FeedServer, write_config: Any
) -> None:
    loaded, _ = first_poll_imports(server, write_config)
    unused = ("gne", "jmespath", "cssselect", "procrastinate", "psycopg", "jieba", "pypinyin")
    assert [m for m in unused if m in loaded] == []


def test_a_first_poll_into_a_new_database_loads_no_sqlite_utils(
    server: FeedServer, write_config: Any
) -> None:
    # The schema is made and the entries stored through plain sqlite3: sqlite-utils
    # would be a fifth of the start-up before the poll's workers fork.
    loaded, config = first_poll_imports(server, write_config, "--no-publish")
    assert "sqlite_utils" not in loaded
    server.set("/a.xml", rss([*TWO_ITEMS, Item("NW3", "标题三")]))
    again = run_aggregator("poll", "--all", "--no-publish", "--config", str(config))
    assert "1 new, 0 updated, 0 already stored from other sources, 2 unchanged" in again.stdout


def test_a_poll_answered_304_loads_no_reader(server: FeedServer, write_config: Any) -> None:
    url = server.set("/a.xml", rss([Item("NW1", "标题一")]))
    config = write_config([{**SOURCE, "url": url}])
    assert run_aggregator("poll", "--all", "--config", str(config)).returncode == 0
    # Polled again: the server answers 304, so nothing is read, sanitized or fetched whole,
    # and the poll's state is written through plain sqlite3.
    loaded = imported_by("poll", "--all", "--no-publish", "--config", str(config))
    assert "pycurl" in loaded  # it did poll
    readers = ("aggregator.parse.feed", "aggregator.run.fulltext", "feedparser", "lxml")
    assert [m for m in (*readers, "sqlite_utils") if m in loaded] == []


def test_every_command_is_still_there_for_help(write_config: Any) -> None:
    done = run_aggregator("--help")
    commands = ("cleanup", "export-opml", "import-opml", "import-posts", "migrate-store")
    for name in (*commands, "poll", "sources"):
        assert f"  {name}" in done.stdout
    done = run_aggregator("sources", "--help")
    for name in ("add", "check", "disable", "edit", "enable", "list", "remove"):
        assert f"  {name}" in done.stdout
    assert "  posts" in run_aggregator("publish", "--help").stdout
