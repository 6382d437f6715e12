"""Every CLI command answers --help; the basic commands work on a real config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from aggregator.cli.main import main, subcommands
from tests.feeds import Item, rss
from tests.feedserver import FeedServer


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(subcommands(group).items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


ALL_COMMANDS = list(command_paths(main))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=[" ".join(p) for p in ALL_COMMANDS])
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command: Any = main
    for name in path:
        command = subcommands(command)[name]
    assert command.help, f"aggregator {' '.join(path)} has no help text"
    assert "Usage:" in result.output


def test_poll_publish_and_list(server: FeedServer, write_config: Any, tmp_path: Path) -> None:
    url = server.set("/a.xml", rss([Item("NW1", "标题一"), Item("NW2", "标题二")]))
    config = write_config(
        [
            {
                "id": "a",
                "name": "源",
                "url": url,
                "category": "三秦都市报",
                "share_code": {"param": "infoCode"},
            }
        ]
    )
    runner = CliRunner()
    polled = runner.invoke(main, ["poll", "--all", "--config", str(config)])
    assert polled.exit_code == 0, polled.output
    assert "a: 2 new" in polled.output
    listed = runner.invoke(main, ["sources", "list", "--json", "--config", str(config)])
    (row,) = json.loads(listed.output)
    assert (row["entries"], row["last_result"], row["last_http_status"]) == (2, "ok", 200)
    published = runner.invoke(main, ["publish", "--config", str(config)])
    assert published.exit_code == 0
    assert "http://feeds.example.org/category/sanqin-dushibao.xml" in published.output


def test_bad_config_exits_2_with_location(write_config: Any) -> None:
    config = write_config([{"id": "a", "name": "源", "url": "gopher://x", "category": "c"}])
    result = CliRunner().invoke(main, ["poll", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:" in result.output and "sources[0].url" in result.output
