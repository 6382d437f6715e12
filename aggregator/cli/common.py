"""What the command modules share: exit codes, the --config option, loading the config
and the store with the right exit status, printing source tables, and editing the
config file with a refusal explained.

Exit codes: 0 success; 1 a command ran but something failed (a source, a check); 2 bad
usage, a refused edit or a bad config file; 3 the database is busy or locked by a
running daemon.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import tomli

from aggregator.config.loader import (
    DEFAULT_CONFIG_PATH,
    SOURCE_KEYS,
    Config,
    Source,
    load_config,
    parse_toml,
)
from aggregator.errors import ConfigError, ConfigNotFound, StoreError
from aggregator.run.pacing import Hold
from aggregator.store import open_store as open_storage
from aggregator.store import slug_shelf
from aggregator.store.records import SourceState, from_iso

# Imported by the functions that use them: editing the file (tomlkit) and the status
# report are for some commands only, and every command starts with this module.
if TYPE_CHECKING:
    from aggregator.config import sourcefile
    from aggregator.store.interface import Storage

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3

F = TypeVar("F", bound=Callable[..., Any])


# --- the config file and the store --------------------------------------------------------


def config_option(command: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_CONFIG_PATH,
        envvar="AGGREGATOR_CONFIG",
        show_default=True,
        help="The sources config file (also AGGREGATOR_CONFIG).",
    )(command)


def config_failure(exc: ConfigError) -> NoReturn:
    """Say what is wrong with the config file (or that there is none) and exit 2."""
    if isinstance(exc, ConfigNotFound):
        click.echo(
            f"error: the config file {exc.path} does not exist ({exc.where})\n"
            "Give another with --config FILE or AGGREGATOR_CONFIG; "
            "to start a new one, create an empty file there.",
            err=True,
        )
    else:
        click.echo(f"error: invalid config\n{exc}", err=True)
    sys.exit(EXIT_CONFIG)


def load(config_path: Path) -> Config:
    """The config, or exit 2 saying what is wrong with it."""
    try:
        return load_config(config_path, slug_shelf_at=slug_shelf)
    except ConfigError as exc:
        config_failure(exc)


def open_store(config: Config) -> Storage:
    """The config's store, or exit 3 when it is locked or unusable."""
    try:
        return open_storage(config.settings.database)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)


def held_line(source: Source, why: Hold, state: SourceState) -> str:
    """Why a source was not fetched, and what the operator can do about it."""
    if why is Hold.DISABLED:
        advice = f"`aggregator sources enable {source.id}` to poll it again"
        return f"{source.id}: skipped: disabled in the config; {advice}"
    if why is Hold.STOPPED:
        advice = f"`aggregator sources enable {source.id}` to poll it again"
        return f"{source.id}: skipped: stopped ({state.disabled_reason}); {advice}"
    until = state.retry_not_before
    when = f"{until:%Y-%m-%d %H:%M:%S} UTC" if until else "later"
    advice = "--force polls it anyway"
    return f"{source.id}: skipped: the server asked to wait until {when} (Retry-After); {advice}"


# --- tables of sources -------------------------------------------------------------------------


def age(value: str | None, now: datetime) -> str:
    when = from_iso(value)
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    span = abs(seconds)
    text = (
        f"{span:.0f}s"
        if span < 120
        else f"{span / 60:.0f}m"
        if span < 7200
        else f"{span / 3600:.1f}h"
    )
    return f"in {text}" if seconds > 0 else f"{text} ago"


def source_table(config: Config, store: Storage) -> list[dict[str, Any]]:
    """Each source's facts from the status report, in config order."""
    from aggregator.serve.status import gather_report, source_facts  # not for every command

    report = gather_report(config, store, datetime.now(UTC), history=False)
    order = {source.id: index for index, source in enumerate(config.sources)}
    return [source_facts(s) for s in sorted(report.sources, key=lambda s: order[s.id])]


def shown_on_terminal(item: dict[str, Any]) -> dict[str, Any]:
    """A source's facts to print: what came from the source (its name, the error its
    server sent...) with control characters shown as escapes, never obeyed."""
    from aggregator.serve.status import visible

    return {
        key: visible(value)
        if isinstance(value, str)
        else [visible(v) for v in value]
        if isinstance(value, list)
        else value
        for key, value in item.items()
    }


def print_sources(table: list[dict[str, Any]]) -> None:
    """Each source's facts, a few lines each (`aggregator status`)."""
    now = datetime.now(UTC)
    for item in map(shown_on_terminal, table):
        state = "enabled" if item["enabled"] else "disabled in config"
        if item["disabled_reason"]:
            state = f"disabled: {item['disabled_reason']}"
        click.echo(f"{item['id']}  {item['name']}  [{state}]")
        click.echo(f"    url: {item['url']}")
        if item["moved_to"]:
            click.echo(f"    moved to: {item['moved_to']}")
        click.echo(
            f"    category: {item['category']}  tags: {', '.join(item['tags']) or '-'}"
            f"  share code: {item['share_code_rule']}"
        )
        result = item["last_result"] or "never polled"
        if item["last_http_status"]:
            result += f" (HTTP {item['last_http_status']})"
        click.echo(
            f"    last poll: {age(item['last_poll_at'], now)}  result: {result}"
            f"  next poll: {age(item['next_poll_at'], now)}  entries: {item['entries']}"
        )
        if item["error_count"]:
            click.echo(
                f"    errors in a row: {item['error_count']}  last error: {item['last_error']}"
            )


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def print_columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    colours: Sequence[Sequence[str | None]] | None = None,
) -> None:
    """An aligned table; CJK characters count two columns."""
    widths = [display_width(h) for h in headers]
    for row in rows:
        widths = [max(w, display_width(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str], styles: Sequence[str | None]) -> str:
        parts = []
        for cell, width, style in zip(cells, widths, styles, strict=True):
            padded = cell + " " * (width - display_width(cell))
            parts.append(click.style(padded, fg=style) if style else padded)
        return "  ".join(parts).rstrip()

    click.echo(click.style(line(headers, [None] * len(headers)), bold=True))
    for index, row in enumerate(rows):
        click.echo(line(row, colours[index] if colours else [None] * len(row)))


# --- editing the config file -------------------------------------------------------------


def fail(message: str, code: int) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def refuse_broken(exc: ConfigError | sourcefile.SourceFileError) -> NoReturn:
    if isinstance(exc, ConfigNotFound):
        config_failure(exc)
    fail(f"the config file is invalid; fix it first (aggregator config check)\n{exc}", 2)


def read_config(config_path: Path) -> tuple[str, Config]:
    """The file's text and the config it describes; exits 2 when it is invalid."""
    from aggregator.config import sourcefile

    try:
        text = sourcefile.read(config_path)
        return text, sourcefile.validate(text, config_path)
    except (ConfigError, sourcefile.SourceFileError) as exc:
        refuse_broken(exc)


def apply_edit(config_path: Path, change: Callable[[str], str]) -> Config:
    """Run one text edit on the config file and save it, or explain the refusal.
    A file that is not TOML at all is refused first, with its line; one that is TOML
    but invalid may be edited, if the edit makes it valid."""
    from aggregator.config import sourcefile

    try:
        text = sourcefile.read(config_path)
        parse_toml(text, config_path)
    except (ConfigError, sourcefile.SourceFileError) as exc:
        refuse_broken(exc)
    try:
        return sourcefile.save(config_path, change(text))
    except sourcefile.SourceFileError as exc:
        fail(str(exc), EXIT_CONFIG)
    except ConfigError as exc:
        try:
            sourcefile.validate(text, config_path)
        except ConfigError as already:  # the file was invalid before, and the edit leaves it so
            refuse_broken(already)
        problems = "\n".join(f"  {p.key}: {p.message}" for p in exc.problems)
        fail(f"refused: the config would not be valid after this change\n{problems}", 2)


def parse_value(text: str) -> Any:
    """A KEY=VALUE value: TOML when it reads as TOML (false, 600, ["a"]), else a string."""
    try:
        return tomli.loads(f"v = {text}")["v"]
    except tomli.TOMLDecodeError:
        return text


def share_code_value(param: str | None, regex: str | None) -> dict[str, str] | None:
    if param and regex:
        raise click.UsageError("give --share-code-param or --share-code-regex, not both")
    value = {"param": param} if param else {"regex": regex} if regex else None
    if value:
        try:
            SOURCE_KEYS["share_code"](value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--share-code-regex") from None
    return value


def share_code_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--share-code-regex",
        metavar="REGEX",
        help="Find the share code with a regex on the link (one group: the code).",
    )(command)
    return click.option(
        "--share-code-param",
        metavar="NAME",
        help="Find the share code in this query parameter of the link, e.g. infoCode.",
    )(command)
