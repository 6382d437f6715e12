"""Every CLI command has help text and is documented (in the spirit of sqlite-utils'
tests/test_docs.py). The lead links docs/cli.md from README.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aggregator.cli import main

DOC = Path(__file__).parents[1] / "docs" / "cli.md"


def walk(group: click.Group, prefix: str = "aggregator") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from walk(command, path)


COMMANDS = list(walk(main))


def test_there_are_commands() -> None:
    paths = [path for path, _ in COMMANDS]
    assert "aggregator sources add" in paths and "aggregator import-opml" in paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_command_has_help(path: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{path} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{path} {param.opts[0]} has no help text"
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_command_is_documented(path: str) -> None:
    assert f"`{path}" in DOC.read_text(encoding="utf-8"), f"{path} is not in {DOC.name}"
