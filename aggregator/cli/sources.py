"""``aggregator sources ...``: add, remove, enable, disable, edit, list and check sources.

Every edit goes through aggregator.config.sourcefile, so the config file stays the
single source of truth and keeps its comments. Exit codes as in aggregator.cli.common:
0 done; 1 the URL or a source could not be fetched or parsed; 2 the request
was refused (unknown id, duplicate id or URL, a change that would make the
config invalid) or the config file is invalid; 3 the database is locked.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from aggregator.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    age,
    apply_edit,
    config_option,
    display_width,
    fail,
    held_line,
    load,
    open_store,
    parse_value,
    print_columns,
    read_config,
    share_code_options,
    share_code_value,
    shown_on_terminal,
    source_table,
)
from aggregator.config import sourcefile
from aggregator.config.loader import SOURCE_KEYS, SOURCE_KINDS, Config, database_exists
from aggregator.config.selectors import check_selectors
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.errors import ConfigError, FetchError, ParseError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from aggregator.identity.identify import Scope
from aggregator.run.due import choose_sources
from aggregator.run.probe import check_source, new_source


@click.group()
def sources() -> None:
    """Add, remove, edit, list and check the sources in the config file."""


# --- sources add ----------------------------------------------------------------------------


def select_table(kind: str, select: tuple[str, ...]) -> dict[str, str]:
    """--select FIELD=EXPR options as a select table; refused for a feed, and for an
    html or json kind without a valid one."""
    if kind == "feed":
        if select:
            fail("--select is for --kind html or --kind json", EXIT_CONFIG)
        return {}
    table = {}
    for item in select:
        name, equals, expression = item.partition("=")
        if not equals or not name.strip():
            fail(f"--select takes FIELD=EXPR, e.g. items='ul.news li', not {item!r}", EXIT_CONFIG)
        table[name.strip()] = expression.strip()
    try:
        check_selectors(table, kind)
    except ValueError as exc:
        fail(f"--select: {exc}", EXIT_CONFIG)
    return table


@sources.command("add")
@config_option
@click.argument("url")
@click.option("--id", "source_id", help="The source id (default: made from the name or host).")
@click.option("--name", help="Display name (default: the feed's title).")
@click.option("--category", help="Category of its entries (default: the name).")
@click.option("--tag", "tags", multiple=True, help="A tag for its entries; repeat for several.")
@click.option("--interval", help='How often to poll, e.g. "30m" or 1800 (default: settings).')
@share_code_options
@click.option(
    "--kind",
    type=click.Choice(SOURCE_KINDS),
    default="feed",
    show_default=True,
    help="feed: RSS, Atom or JSON Feed (found on an HTML page that announces it); html: a "
    "list page read with --select; json: an API read with --select paths.",
)
@click.option(
    "--select",
    "select",
    multiple=True,
    metavar="FIELD=EXPR",
    help="For --kind html or json: a selector (XPath or CSS) or JMESPath path, e.g. "
    "items='ul.news li' or title=a; repeat for each field.",
)
@click.option("--disabled", is_flag=True, help="Add it with enabled = false.")
@click.option("--dry-run", is_flag=True, help="Show the [[sources]] table; do not write it.")
@click.option("--json", "as_json", is_flag=True, help="Print the new source as JSON.")
def sources_add(
    config_path: Path,
    url: str,
    source_id: str | None,
    name: str | None,
    category: str | None,
    tags: tuple[str, ...],
    interval: str | None,
    share_code_param: str | None,
    share_code_regex: str | None,
    kind: str,
    select: tuple[str, ...],
    disabled: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Check that URL is a feed (or an HTML page announcing one) and add it to the config.
    With --kind html or json, check that the --select selectors or paths find entries.

    The name is proposed from the feed's title and the id from the name or the
    host; the new [[sources]] table goes after the last one, and the rest of
    the file, comments included, is left exactly as it was.
    """
    share_code = share_code_value(share_code_param, share_code_regex)
    selectors = select_table(kind, select)
    text, config = read_config(config_path)
    try:
        early = {"url": url, **({"id": source_id} if source_id else {})}
        sourcefile.refuse_duplicates(text, early)
    except sourcefile.SourceFileError as exc:
        fail(str(exc), EXIT_CONFIG)
    try:
        with Fetcher(Limits.from_settings(config.settings), config.settings.user_agent) as fetcher:
            found = new_source(
                fetcher,
                config,
                url,
                datetime.now(UTC),
                source_id=source_id,
                name=name,
                category=category,
                tags=tags,
                interval=parse_value(interval) if interval else None,
                share_code=share_code,
                disabled=disabled,
                kind=kind,
                select=selectors,
            )
    except (FetchError, ParseError) as exc:
        fail(f"{url} is not a usable {'feed' if kind == 'feed' else 'source'}: {exc}", EXIT_FAILED)
    values = found.values
    report = found.report(written=not dry_run)

    def change(current: str) -> str:
        return sourcefile.add_source(current, values)

    if dry_run:
        try:
            sourcefile.validate(change(text), config_path)
        except sourcefile.SourceFileError as exc:
            fail(str(exc), EXIT_CONFIG)
        except ConfigError as exc:
            fail(f"refused: the config would not be valid\n{exc}", EXIT_CONFIG)
    else:
        apply_edit(config_path, change)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    if found.discovered_from:
        click.echo(f"{found.discovered_from} is a web page; it announces the feed {values['url']}")
    click.echo(f"feed: {found.feed_title or '(no title)'}, {found.entries} entries")
    click.echo(found.share_code)
    if dry_run:
        click.echo("would add (dry run, nothing written):\n")
        click.echo(sourcefile.render_source(values))
        return
    click.secho(f"added source {values['id']!r} ({values['name']}) to {config_path}", fg="green")
    click.echo(f"  change it with: aggregator sources edit {values['id']} --name ... ")


# --- remove / enable / disable / edit ----------------------------------------------------------


@sources.command("remove")
@config_option
@click.argument("source_id", metavar="ID")
def sources_remove(config_path: Path, source_id: str) -> None:
    """Remove source ID from the config (its stored entries stay in the database)."""
    apply_edit(config_path, lambda text: sourcefile.remove_source(text, source_id))
    click.secho(f"removed source {source_id!r} from {config_path}", fg="green")


def _set_enabled(config_path: Path, source_ids: tuple[str, ...], enabled: bool) -> Config:
    def change(text: str) -> str:
        for source_id in source_ids:
            text = sourcefile.set_enabled(text, source_id, enabled)
        return text

    config = apply_edit(config_path, change)
    word = "enabled" if enabled else "disabled"
    for source_id in source_ids:
        click.secho(f"{word} source {source_id!r}", fg="green" if enabled else "yellow")
    return config


@sources.command("enable")
@config_option
@click.argument("source_ids", metavar="ID...", nargs=-1, required=True)
def sources_enable(config_path: Path, source_ids: tuple[str, ...]) -> None:
    """Enable sources in the config (a written enabled = false becomes true), and lift
    the stop of any that answered 410 Gone: they are due again at once."""
    config = _set_enabled(config_path, source_ids, True)
    if database_exists(config.settings.database):
        with open_store(config) as store:
            for source_id in store.enable_sources(source_ids):
                click.secho(f"lifted the 410 Gone stop of {source_id!r}: due now", fg="green")


@sources.command("disable")
@config_option
@click.argument("source_ids", metavar="ID...", nargs=-1, required=True)
def sources_disable(config_path: Path, source_ids: tuple[str, ...]) -> None:
    """Disable sources in the config (enabled = false): no longer polled, entries kept."""
    _set_enabled(config_path, source_ids, False)


@sources.command("edit")
@config_option
@click.argument("source_id", metavar="ID")
@click.argument("assignments", metavar="[KEY=VALUE]...", nargs=-1)
@click.option("--name", help="New display name.")
@click.option("--url", help="New feed URL.")
@click.option("--category", help="New category.")
@click.option("--tag", "tags", multiple=True, help="Replace the tags; repeat for several.")
@click.option("--interval", help='New poll interval, e.g. "10m".')
@share_code_options
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove a key; repeatable.")
def sources_edit(
    config_path: Path,
    source_id: str,
    assignments: tuple[str, ...],
    name: str | None,
    url: str | None,
    category: str | None,
    tags: tuple[str, ...],
    interval: str | None,
    share_code_param: str | None,
    share_code_regex: str | None,
    unset: tuple[str, ...],
) -> None:
    """Change keys of source ID in place, keeping the file's comments.

    Any key can be set as KEY=VALUE; VALUE is read as TOML when it can be
    (enabled=false, interval=600, tags='["a", "b"]') and as a string otherwise
    (interval=10m, exclude_title=广告).
    """
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {assignment!r}")
        changes[key.strip()] = parse_value(value.strip())
    options = {"name": name, "url": url, "category": category, "interval": interval}
    changes.update(
        {k: parse_value(v) if k == "interval" else v for k, v in options.items() if v is not None}
    )
    if tags:
        changes["tags"] = list(dict.fromkeys(tags))
    share_code = share_code_value(share_code_param, share_code_regex)
    if share_code:
        changes["share_code"] = share_code
    changes.update({key: None for key in unset})
    if not changes:
        raise click.UsageError("nothing to change: give KEY=VALUE pairs or options")
    unknown = sorted(k for k in changes if not sourcefile.known_key(k))
    if unknown:
        known = ", ".join(sorted(SOURCE_KEYS))
        fail(f"unknown key {', '.join(unknown)} (known keys: {known})", EXIT_CONFIG)
    if set(unset) & {"id", "name", "url", "category"}:
        fail("id, name, url and category cannot be removed", EXIT_CONFIG)
    apply_edit(config_path, lambda text: sourcefile.update_source(text, source_id, changes))
    for key, value in changes.items():
        shown = "(removed)" if value is None else sourcefile.render_value(value)
        click.echo(f"{source_id}: {key} = {shown}")


# --- list ------------------------------------------------------------------------------------


def _state(item: dict[str, Any]) -> tuple[str, str]:
    if not item["enabled"]:
        return "disabled", "yellow"
    if item["disabled_reason"]:
        return "stopped", "red"
    if item["error_count"]:
        return "failing", "red"
    return "enabled", "green"


@sources.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def sources_list(config_path: Path, as_json: bool) -> None:
    """List the sources: the config (category, interval, share code) and the live state
    from the database (last poll, result, next poll, entries) side by side."""
    config = load(config_path)
    with open_store(config) as store:
        table = source_table(config, store)
    if as_json:
        click.echo(json.dumps(table, ensure_ascii=False, indent=2))
        return
    table = [shown_on_terminal(item) for item in table]
    now = datetime.now(UTC)
    headers = [
        "ID",
        "STATE",
        "NAME",
        "CATEGORY",
        "EVERY",
        "SHARE CODE",
        "LAST POLL",
        "RESULT",
        "NEXT POLL",
        "ENTRIES",
    ]
    rows, colours = [], []
    for item in table:
        state, colour = _state(item)
        result = item["last_result"] or "never"
        if item["last_http_status"]:
            result += f" {item['last_http_status']}"
        rows.append(
            [
                item["id"],
                state,
                item["name"],
                item["category"],
                _interval(item["interval"]),
                item["share_code_rule"],
                age(item["last_poll_at"], now),
                result,
                age(item["next_poll_at"], now) if item["enabled"] else "-",
                str(item["entries"]),
            ]
        )
        result_colour = "red" if item["last_result"] in ("error", "gone") else None
        colours.append([None, colour, None, None, None, None, None, result_colour, None, None])
    print_columns(headers, rows, colours)
    for item in table:
        if item["error_count"]:
            click.secho(
                f"{item['id']}: {item['error_count']} errors in a row, last: {item['last_error']}",
                fg="red",
            )
        if item["disabled_reason"]:
            click.secho(f"{item['id']}: stopped: {item['disabled_reason']}", fg="red")
        if item["moved_to"]:
            click.secho(f"{item['id']}: moved to: {item['moved_to']}", fg="yellow")


def _interval(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


# --- check -----------------------------------------------------------------------------------


def _print_check(report: dict[str, Any]) -> None:
    click.secho(f"{report['id']}  {report['url']}", bold=True)
    if "skipped" in report:
        click.secho(f"  {report['skipped']}", fg="yellow")
        return
    if not report["ok"]:
        click.secho(f"  error: {report['error']}", fg="red")
        return
    rules = ", ".join(f"{name}: {count}" for name, count in report["share_code_rules"].items())
    click.echo(
        f"  feed: {report['feed_title'] or '(no title)'}; {report['entries']} entries, "
        f"{report['kept']} kept by the filters"
    )
    configured = report["configured_rule"]
    hits = report["share_code_rules"].get(configured, 0)
    if configured == "none":
        click.echo(f"  no share-code rule: codes come from guid, link or content ({rules or '-'})")
        if report.get("suggested_share_code_param"):
            click.secho(
                f"  the links suggest --share-code-param {report['suggested_share_code_param']}",
                fg="yellow",
            )
    else:
        colour = "green" if hits == report["entries"] else "yellow"
        click.secho(
            f"  share-code rule {configured}: {hits} of {report['entries']} entries "
            f"(by rule: {rules or '-'})",
            fg=colour,
        )
    if report["unmatched"]:
        click.secho(
            f"  no item has a value for: {', '.join(report['unmatched'])} "
            "(a selector that matches nothing, or a path that is not there)",
            fg="yellow",
        )
    _print_article(report.get("article"))
    scopes = report["scopes"]
    click.echo(
        f"  identities: {scopes['global']} global (merge with any source's), "
        f"{scopes['source']} source-scoped (never merge with another source's)"
    )
    for index, entry in enumerate(report["first"], start=1):
        title = entry["title"] or f"(no title; shown as: {entry['shown_title']})"
        click.echo(f"  {index}. {title}")
        click.echo(f"     link: {entry['link'] or '-'}")
        for name, value in entry.get("picked", {}).items():
            click.echo(f"     picked {name}: {_short(value)}")
        if entry["published_raw"] or entry["published"]:
            click.echo(f"     date: {entry['published_raw'] or '-'} -> {entry['published'] or '-'}")
        for name in ("guid", "author"):
            if entry[name]:
                click.echo(f"     {name}: {entry[name]}")
        if entry["images"]:
            click.echo(f"     image: {', '.join(entry['images'])}")
        if entry["text"]:
            click.echo(f"     text: {entry['text']}")
        by_rule = entry["rule"] == report["configured_rule"]
        click.echo(f"     share code: {entry['identity'] if by_rule else '-'}")
        scope = "global" if entry["scope"] == Scope.GLOBAL.value else "source-scoped"
        click.echo(f"     identity: {entry['identity']}  ({scope}, rule: {entry['rule']})")
        if entry["same_as_entry"]:
            click.secho(
                f"     the same identity as entry {entry['same_as_entry']}: stored as one entry",
                fg="yellow",
            )
        if entry["stored_from"]:
            click.echo(
                f"     already stored from {', '.join(entry['stored_from'])}: "
                "one entry with their copies"
            )
        click.echo(
            f"     categories: {', '.join(entry['categories'])}  "
            f"tags: {', '.join(entry['tags']) or '-'}"
        )
        if entry["feed_categories"]:
            click.echo(f"     feed's own categories: {', '.join(entry['feed_categories'])}")
        if entry["mapping_rules"]:
            click.echo(f"     mapping rules: {', '.join(entry['mapping_rules'])}")
        if not entry["kept"]:
            click.secho(f"     dropped: {entry['dropped_because']}", fg="yellow")


def _print_article(article: dict[str, str] | None) -> None:
    """What full_text made of the first entry's article page."""
    if article is None:
        return
    if article["error"]:
        click.secho(
            f"  full text of {article['link']}: failed ({article['error']}); "
            "the entry keeps its own text",
            fg="yellow",
        )
        return
    text = article["text"]
    click.echo(f"  full text of {article['link']}: {len(text)} characters: {_short(text)}")


def _short(value: str, width: int = 80) -> str:
    """One line of a picked value, cut to about `width` columns."""
    line = " ".join(value.split())
    return line if display_width(line) <= width else line[: width // 2] + "…"


@sources.command("check")
@config_option
@click.argument("source_ids", metavar="[ID]...", nargs=-1)
@click.option("--limit", default=5, show_default=True, help="How many entries to show.")
@share_code_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--force",
    is_flag=True,
    help="Fetch sources inside a server's Retry-After window too (never a disabled source "
    "or one stopped by 410 Gone: `aggregator sources enable` those).",
)
def sources_check(
    config_path: Path,
    source_ids: tuple[str, ...],
    limit: int,
    share_code_param: str | None,
    share_code_regex: str | None,
    as_json: bool,
    force: bool,
) -> None:
    """Fetch and parse sources without storing anything, and show what would be extracted
    from the first entries: title, link, identity (global or scoped to the source, and
    the rule that gave it, with what it would be stored as one entry with), categories,
    tags, and whether the filters keep it. With no ID, every enabled source.

    --share-code-param/--share-code-regex try another rule without editing the config.
    As for `poll`, a source disabled, stopped by 410 Gone or inside a Retry-After
    window (unless --force) is not fetched.
    """
    config = load(config_path)
    unknown = [s for s in source_ids if config.source(s) is None]
    if unknown:
        fail(f"no such source: {', '.join(unknown)}", EXIT_CONFIG)
    if database_exists(config.settings.database):  # its polls' state; nothing is written
        with open_store(config) as store:
            chosen, held = choose_sources(config, store, source_ids, every=True, force=force)
    else:
        chosen, held = choose_sources(config, None, source_ids, every=True, force=force)
    trial = share_code_value(share_code_param, share_code_regex)
    reports: list[dict[str, Any]] = [
        {"id": s.id, "url": s.url, "ok": False, "skipped": held_line(s, why, state)}
        for s, why, state in held
    ]
    with Fetcher(Limits.from_settings(config.settings), config.settings.user_agent) as fetcher:
        for source in chosen:
            if trial:
                source = replace(source, share_code=ShareCodeRule.from_config(trial))
            reports.append(
                check_source(fetcher, source, limit, datetime.now(UTC), config.settings.database)
            )
    if as_json:
        click.echo(json.dumps(reports, ensure_ascii=False, indent=2))
    else:
        for report in reports:
            _print_check(report)
    # A source passed over unasked is no failure; one asked for by name is.
    if any(not r["ok"] and (source_ids or "skipped" not in r) for r in reports):
        sys.exit(EXIT_FAILED)
