"""What an operator reads when something is wrong: one clear line naming the cause and
what to do, an exit status, never a traceback. The messages an operator meets first are
checked on the real command (`python -m aggregator ...` in a subprocess); the matrix of
every command against every kind of bad input runs in-process."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from aggregator.cli.main import main, subcommands
from tests.conftest import config_text
from tests.conftest import run_aggregator as aggregator
from tests.daemonkit import running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer


def source(source_id: str, url: str) -> dict[str, Any]:
    return {"id": source_id, "name": source_id, "url": url, "category": "测试"}


# --- messages, on the real command -------------------------------------------------------


def test_a_port_in_use_names_the_address_and_the_way_out(write_config: Any) -> None:
    path = write_config([])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = aggregator("run", "--config", str(path), AGGREGATOR_PORT=str(port))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith(
        f"error: cannot start: cannot listen on 127.0.0.1:{port}: the address is already in "
        "use (another aggregator daemon, or another program); choose another with `port` in "
        "[settings] of the config file, or AGGREGATOR_PORT=<port> in the environment\n"
    ), done.stderr


def test_a_missing_config_file_says_where_it_was_looked_for(tmp_path: Path) -> None:
    for command in (["status"], ["run"], ["config", "check"], ["sources", "disable", "x"]):
        done = aggregator(*command, cwd=tmp_path, AGGREGATOR_CONFIG="")
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            "error: the config file config/sources.toml does not exist (looked for "
            f"{tmp_path}/config/sources.toml, relative to the current folder {tmp_path})\n"
            "Give another with --config FILE or AGGREGATOR_CONFIG; to start a new one, "
            "create an empty file there.\n"
        ), command
    assert not (tmp_path / "config").exists()


def test_a_config_with_a_byte_order_mark_is_read(write_config: Any) -> None:
    path = write_config([source("a", "http://example.org/a.xml")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    done = aggregator("config", "check", "--config", str(path))
    assert (done.returncode, done.stdout) == (0, f"{path}: ok, 1 sources\n"), done.stderr


def test_config_check_refuses_duplicate_urls_as_the_edit_commands_do(write_config: Any) -> None:
    path = write_config(
        [
            source("a", "http://example.org/feed.xml"),
            source("b", "HTTP://Example.org:80/feed.xml?utm_source=x"),
        ]
    )
    line = (
        path.read_text(encoding="utf-8")
        .splitlines()
        .index('url = "HTTP://Example.org:80/feed.xml?utm_source=x"')
    )
    done = aggregator("config", "check", "--config", str(path))
    assert done.returncode == 2
    assert done.stderr == (
        f"{path}:{line + 1}: sources[1].url (source 'b'): duplicate url, already used by "
        "source 'a'\n1 problem(s) found\n"
    )
    only_a = write_config([source("a", "http://example.org/feed.xml")])
    url = "HTTP://Example.org:80/feed.xml?utm_source=x"
    refused = CliRunner().invoke(main, ["sources", "add", url, "--config", str(only_a)])
    assert refused.exit_code == 2
    assert f"{url} is already configured, as source 'a'" in refused.stderr


def test_poll_reports_each_source_once_in_one_wording(
    server: FeedServer, write_config: Any
) -> None:
    path = write_config(
        [
            source("fine", server.set("/fine.xml", rss([Item("NW1", "一"), Item("NW2", "二")]))),
            source("broken", server.url("/missing.xml")),
        ]
    )
    done = aggregator("poll", "--all", "--config", str(path))
    assert done.returncode == 1
    assert sorted(done.stdout.splitlines()[:2]) == [
        "broken: failed (1 in a row): HTTP 404 Not Found",
        "fine: 2 new, 0 updated, 0 already stored from other sources, 0 unchanged",
    ], done.stdout
    assert "fine" not in done.stderr and "broken" not in done.stderr, done.stderr


# --- no traceback, whatever the input ------------------------------------------------------

# Every command, with arguments that reach its work (a source id, a file, a folder).
COMMANDS = [
    ["run"],
    ["poll", "--all"],
    ["poll", "a"],
    ["publish"],
    ["publish", "posts"],
    ["status"],
    ["cleanup"],
    ["config", "check"],
    ["sources", "list"],
    ["sources", "add", "http://127.0.0.1:9/feed.xml"],
    ["sources", "remove", "a"],
    ["sources", "enable", "a"],
    ["sources", "disable", "a"],
    ["sources", "edit", "a", "interval=1h"],
    ["sources", "check", "a"],
    ["import-opml", "{opml}"],
    ["export-opml"],
    ["import-posts", "{posts}"],
    ["migrate-store", "data/a.db", "postgresql://127.0.0.1:9/nothing"],
]
GOOD_SOURCE = (
    '[[sources]]\nid = "a"\nname = "A"\nurl = "http://127.0.0.1:9/a.xml"\ncategory = "c"\n'
)
BROKEN_CONFIGS = {
    "syntax": '[settings]\nport = "8080\n',
    "not-utf8": "# \u4e2d\u6587\n".encode("gbk"),
    "folder": None,  # the config path is a folder
    "missing": "",  # no file at all
    "invalid": '[settings]\nport = "eighty"\n' + GOOD_SOURCE,
    "duplicate": GOOD_SOURCE + GOOD_SOURCE.replace('"a"', '"b"'),
}


def test_every_command_is_covered() -> None:
    def paths(group: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
        found = set()
        for name, command in subcommands(group).items():
            found.add((*prefix, name))
            if isinstance(command, click.Group):
                found |= paths(command, (*prefix, name))
        return found

    groups = {("sources",), ("config",)}
    covered = {tuple(c[: len(p)]) for c in COMMANDS for p in paths(main)}
    assert paths(main) - groups <= covered


def invoke(args: list[str], tmp_path: Path) -> Any:
    opml = tmp_path / "subscriptions.opml"
    opml.write_text("<opml><body/></opml>", encoding="utf-8")
    posts = tmp_path / "_posts"
    posts.mkdir(exist_ok=True)
    args = [a.format(opml=opml, posts=posts) for a in args]
    return CliRunner().invoke(main, args)


def assert_clean(result: Any, args: list[str]) -> None:
    """A message and an exit status; an exception escaping the command is a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.output,
        result.exc_info,
    )
    assert "Traceback" not in result.output, (args, result.output)


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_no_command_answers_a_broken_config_with_a_traceback(case: str, tmp_path: Path) -> None:
    path = tmp_path / "project" / "config" / "sources.toml"
    path.parent.mkdir(parents=True)
    content = BROKEN_CONFIGS[case]
    for command in COMMANDS:
        if content is None:
            path.mkdir(exist_ok=True)
        elif content:
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        result = invoke([*command, "--config", str(path)], tmp_path)
        assert_clean(result, command)
        if case == "duplicate" and command == ["sources", "remove", "a"]:
            assert result.exit_code == 0, result.output  # the edit that mends the file
            continue
        assert result.exit_code == 2, (command, result.output)
        assert str(path) in result.output, (command, result.output)


BAD_PLACES = {
    "database-is-a-folder": lambda p: (p / "data" / "agg.db").mkdir(parents=True),
    "database-is-not-sqlite": lambda p: (
        (p / "data").mkdir() or (p / "data" / "agg.db").write_text("hello, not a database\n" * 200)
    ),
    "output-is-a-file": lambda p: (p / "feeds").write_text("a file where a folder goes"),
    "posts-is-a-file": lambda p: (p / "site").write_text("a file where a folder goes"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLACES))
def test_no_command_answers_a_bad_data_folder_with_a_traceback(case: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    path = project / "config" / "sources.toml"
    path.write_text(
        '[settings]\ndatabase = "data/agg.db"\n\n[publish.posts]\noutput_dir = "site/_posts"\n\n'
        + GOOD_SOURCE,
        encoding="utf-8",
    )
    BAD_PLACES[case](project)
    for command in COMMANDS:
        if command == ["run"]:
            continue  # a daemon that could start would run: tests/test_lifecycle.py
        result = invoke([*command, "--config", str(path)], tmp_path)
        assert_clean(result, command)
        assert result.exit_code in (0, 1, 2, 3), (command, result.output)


# --- the daemon speaks the same words --------------------------------------------------------


def test_the_daemon_logs_a_poll_in_the_words_poll_prints(
    server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """And with no base_url in the file, its links follow the port it serves on."""
    path = tmp_path / "project" / "config" / "sources.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        '[settings]\ndatabase = "data/a.db"\npublish_delay = 0.05\n\n'
        + config_text([source("broken", server.url("/missing.xml"))]).removeprefix("[settings]\n"),
        encoding="utf-8",
    )
    caplog.set_level(logging.INFO, logger="aggregator")
    with running(path) as daemon:
        wait_for(lambda: "source broken: failed" in caplog.text, 30, "the poll's log line")
        assert daemon.server is not None
        port = daemon.server.server_address[1]
        assert daemon.config.settings.base_url == f"http://127.0.0.1:{port}"
        assert daemon.publisher is not None
        assert daemon.publisher.url_of("all.xml") == f"http://127.0.0.1:{port}/all.xml"
    [line] = [r.getMessage() for r in caplog.records if "broken: failed" in r.getMessage()]
    assert line == "source broken: failed (1 in a row): HTTP 404 Not Found"
