"""Every CLI command has help text and is documented (in the spirit of sqlite-utils'
tests/test_docs.py): docs/cli.md's command reference is generated from the commands and
must be current; the README's settings table names every setting the code accepts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aggregator.cli.main import main, subcommands
from aggregator.config.loader import ENV_OVERRIDES, RESTART_SETTINGS, SETTINGS_KEYS, Settings
from scripts import architecture, cli_reference

DOC = Path(__file__).parents[1] / "docs" / "cli.md"


def walk(group: click.Group, prefix: str = "aggregator") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(subcommands(group).items()):
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


# --- the generated command reference ---------------------------------------------------


def test_the_command_reference_is_current() -> None:
    current = DOC.read_text(encoding="utf-8")
    assert current == cli_reference.render(current), (
        "docs/cli.md's command reference is out of date: run "
        ".venv/bin/python scripts/cli_reference.py"
    )


@pytest.mark.parametrize(("path", "command"), [("aggregator", main), *COMMANDS])
def test_every_option_is_in_the_reference(path: str, command: click.Command) -> None:
    """Each command's section names every option it takes (the global ones under
    `aggregator` itself), in every spelling."""
    text = DOC.read_text(encoding="utf-8").split(cli_reference.START, 1)[1]
    heading = f"### `{path}`\n"
    assert heading in text, f"{path} has no section in the command reference"
    body = text.split(heading, 1)[1].split("\n### ", 1)[0]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            for name in param.opts + param.secondary_opts:
                assert re.search(rf"`[^`]*{re.escape(name)}\b", body), f"{path} {name}"
    assert "-h, --help" in body


# --- the README's settings table ----------------------------------------------------------


def readme_section(title: str) -> str:
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    return text.split(title, 1)[1]


def test_every_setting_is_in_the_readme_table() -> None:
    table = readme_section("| `[settings]` key | default | meaning |").split("\n\n", 1)[0]
    documented = {
        name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])
    }
    assert documented == set(SETTINGS_KEYS)
    assert set(SETTINGS_KEYS) == {f.name for f in fields(Settings)}  # declared once


def test_the_readme_table_names_every_environment_override() -> None:
    table = readme_section("| `[settings]` key | default | meaning |").split("\n\n", 1)[0]
    assert set(re.findall(r"`(AGGREGATOR_\w+)`", table)) == set(ENV_OVERRIDES)


def test_the_readme_names_the_settings_that_need_a_restart() -> None:
    sentence = readme_section("A running daemon applies a changed setting at once, except")
    named = re.findall(r"`(\w+)`", sentence.split("which wait for a restart", 1)[0])
    assert sorted(named) == sorted(RESTART_SETTINGS)


# --- the generated architecture map ----------------------------------------------------


def test_the_architecture_map_is_current() -> None:
    current = architecture.README.read_text(encoding="utf-8")
    assert architecture.START in current
    assert current == architecture.render(current), (
        "README.md's architecture map is out of date: run .venv/bin/python scripts/architecture.py"
    )


def test_every_module_says_what_it_holds() -> None:
    for module in architecture.PACKAGE.rglob("*.py"):
        if module.name != "__main__.py":
            assert architecture.summary(module), f"{module} has no docstring"
