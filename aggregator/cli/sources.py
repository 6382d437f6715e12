"""``aggregator sources ...``: add, remove, enable, disable, edit, list and check sources.

Every edit goes through aggregator.config.sourcefile, so the config file stays the
single source of truth and keeps its comments. Exit codes as in aggregator.cli.main:
0 done; 1 the URL or a source could not be fetched or parsed; 2 the request
was refused (unknown id, duplicate id or URL, a change that would make the
config invalid) or the config file is invalid; 3 the database is locked.
"""

from __future__ import annotations

import json
import sys
import tomllib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from aggregator.cli.main import (
    EXIT_CONFIG,
    EXIT_FAILED,
    _age,
    _load,
    _open_store,
    _source_table,
    choose_sources,
    config_failure,
    config_option,
    held_line,
    shown_on_terminal,
    sources,
)
from aggregator.config import sourcefile
from aggregator.config.loader import SOURCE_KEYS, Config, ShareCodeRule, Source, parse_toml
from aggregator.errors import ConfigError, ConfigNotFound, FetchError, ParseError
from aggregator.fetch.discover import feed_links, looks_like_html, propose_id, suggest_share_param
from aggregator.fetch.fetcher import Fetcher, Limits
from aggregator.identity.identify import Scope, identify
from aggregator.identity.rules import classify, matching_rules, rejection
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.parse.sanitize import shown_title
from aggregator.run.poll import extract
from aggregator.store import carriers_of

MAX_DISCOVERED = 3  # feed links of an HTML page tried in turn


# --- shared helpers ---------------------------------------------------------------------


def fail(message: str, code: int) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _refuse_broken(exc: ConfigError | sourcefile.SourceFileError) -> NoReturn:
    if isinstance(exc, ConfigNotFound):
        config_failure(exc)
    fail(f"the config file is invalid; fix it first (aggregator config check)\n{exc}", 2)
    raise AssertionError from exc  # unreachable: fail() exits


def read_config(config_path: Path) -> tuple[str, Config]:
    """The file's text and the config it describes; exits 2 when it is invalid."""
    try:
        text = sourcefile.read(config_path)
        return text, sourcefile.validate(text, config_path)
    except (ConfigError, sourcefile.SourceFileError) as exc:
        _refuse_broken(exc)


def apply_edit(config_path: Path, change: Callable[[str], str]) -> Config:
    """Run one text edit on the config file and save it, or explain the refusal.
    A file that is not TOML at all is refused first, with its line; one that is TOML
    but invalid may be edited, if the edit makes it valid."""
    try:
        text = sourcefile.read(config_path)
        parse_toml(text, config_path)
    except (ConfigError, sourcefile.SourceFileError) as exc:
        _refuse_broken(exc)
    try:
        return sourcefile.save(config_path, change(text))
    except sourcefile.SourceFileError as exc:
        fail(str(exc), EXIT_CONFIG)
    except ConfigError as exc:
        try:
            sourcefile.validate(text, config_path)
        except ConfigError as already:  # the file was invalid before, and the edit leaves it so
            _refuse_broken(already)
        problems = "\n".join(f"  {p.key}: {p.message}" for p in exc.problems)
        fail(f"refused: the config would not be valid after this change\n{problems}", 2)
    raise AssertionError("unreachable")


def parse_value(text: str) -> Any:
    """A KEY=VALUE value: TOML when it reads as TOML (false, 600, ["a"]), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
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


# --- finding the feed behind a URL --------------------------------------------------------


@dataclass(frozen=True)
class Found:
    url: str  # the feed's own URL (after autodiscovery and permanent redirects)
    feed: ParsedFeed
    discovered_from: str | None = None  # the HTML page, when autodiscovery was used


def find_feed(fetcher: Fetcher, url: str, probe: Source, now: datetime) -> Found:
    """Fetch the URL; if it is an HTML page, follow its <link rel="alternate"> feeds."""
    fetched = fetcher.fetch(url, headers=probe.headers, allow_private=probe.allow_private, now=now)
    body = fetched.body or b""
    final = fetched.moved_to or url
    try:
        return Found(final, extract(probe, body, fetched.url, fetched.content_type, now))
    except ParseError as exc:
        if not looks_like_html(body, fetched.content_type):
            raise
        links = feed_links(body, fetched.url)
        if not links:
            raise ParseError(
                'an HTML page that announces no feed (no <link rel="alternate" '
                'type="application/rss+xml"> or atom+xml)'
            ) from exc
    errors = []
    for link in links[:MAX_DISCOVERED]:
        try:
            found = fetcher.fetch(link, allow_private=probe.allow_private, now=now)
            feed = extract(probe, found.body or b"", found.url, found.content_type, now)
            return Found(found.moved_to or link, feed, discovered_from=final)
        except (FetchError, ParseError) as exc:
            errors.append(f"{link}: {exc}")
    raise ParseError("none of the feeds the page announces could be read: " + "; ".join(errors))


def share_code_summary(entries: Sequence[EntryRecord], rule: ShareCodeRule) -> str:
    if not entries:
        return "the feed has no entries yet"
    by_rule = sum(1 for e in entries if e.code_rule == rule.name)
    if rule.name == "none":
        hint = suggest_share_param([e.link for e in entries if e.link])
        advice = f"; the links suggest --share-code-param {hint}" if hint else ""
        return f"no share-code rule: entries are identified by guid, link or a hash{advice}"
    return f"share-code rule {rule.name} found a code in {by_rule} of {len(entries)} entries"


# --- sources add ----------------------------------------------------------------------------


@sources.command("add")
@config_option
@click.argument("url")
@click.option("--id", "source_id", help="The source id (default: made from the name or host).")
@click.option("--name", help="Display name (default: the feed's title).")
@click.option("--category", help="Category of its entries (default: the name).")
@click.option("--tag", "tags", multiple=True, help="A tag for its entries; repeat for several.")
@click.option("--interval", help='How often to poll, e.g. "30m" or 1800 (default: settings).')
@share_code_options
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
    disabled: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Check that URL is a feed (or an HTML page announcing one) and add it to the config.

    The name is proposed from the feed's title and the id from the name or the
    host; the new [[sources]] table goes after the last one, and the rest of
    the file, comments included, is left exactly as it was.
    """
    share_code = share_code_value(share_code_param, share_code_regex)
    text, config = read_config(config_path)
    rule = ShareCodeRule(**share_code) if share_code else ShareCodeRule()
    try:
        early = {"url": url, **({"id": source_id} if source_id else {})}
        sourcefile.refuse_duplicates(text, early)
    except sourcefile.SourceFileError as exc:
        fail(str(exc), EXIT_CONFIG)
    probe = Source("new", "new", url, "new", share_code=rule, timezone=config.settings.timezone)
    limits = Limits.from_settings(config.settings)
    try:
        with Fetcher(limits, config.settings.user_agent) as fetcher:
            found = find_feed(fetcher, url, probe, datetime.now(UTC))
    except (FetchError, ParseError) as exc:
        fail(f"{url} is not a usable feed: {exc}", EXIT_FAILED)
        return
    host = urlsplit(found.url).hostname or found.url
    name = name or found.feed.title or host
    taken = {s.id for s in config.sources}
    values: dict[str, Any] = {
        "id": source_id or propose_id(name, found.url, taken),
        "name": name,
        "url": found.url,
        "category": category or name,
    }
    if tags:
        values["tags"] = list(dict.fromkeys(tags))
    if interval:
        values["interval"] = parse_value(interval)
    if share_code:
        values["share_code"] = share_code
    if disabled:
        values["enabled"] = False
    entries = found.feed.entries
    report = {
        "source": values,
        "feed_title": found.feed.title,
        "entries": len(entries),
        "discovered_from": found.discovered_from,
        "share_code": share_code_summary(entries, rule),
        "written": not dry_run,
    }

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
        click.echo(f"{found.discovered_from} is a web page; it announces the feed {found.url}")
    click.echo(f"feed: {found.feed.title or '(no title)'}, {len(entries)} entries")
    click.echo(report["share_code"])
    if dry_run:
        click.echo("would add (dry run, nothing written):\n")
        click.echo(sourcefile.render_source(values))
        return
    click.secho(f"added source {values['id']!r} ({name}) to {config_path}", fg="green")
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
    if config.settings.database.exists():
        with _open_store(config) as store:
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
    config = _load(config_path)
    with _open_store(config) as store:
        table = _source_table(config, store)
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
                _age(item["last_poll_at"], now),
                result,
                _age(item["next_poll_at"], now) if item["enabled"] else "-",
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


def check_entry(entry: EntryRecord, source: Source) -> dict[str, Any]:
    """What storing would make of one entry: its identity (global or scoped to the
    source, and the rule that gave it), title, categories, tags, or why the source's
    filters drop it."""
    dropped = rejection(entry, source.filters)
    classified = classify(entry, source)
    found = identify(entry, source.share_code, source.id)
    return {
        "title": entry.title,
        "shown_title": shown_title(entry.title, entry.summary, entry.content, entry.link),
        "link": entry.link,
        "identity": found.code,
        "scope": found.scope.value,
        "rule": found.rule,
        "share_code": entry.code,
        "share_code_rule": entry.code_rule,
        "feed_categories": list(entry.categories),
        "categories": [source.category, *classified.extra_categories],
        "tags": [*source.tags, *classified.extra_tags],
        "mapping_rules": [rule.name for rule in matching_rules(entry, source)],
        "kept": dropped is None,
        "dropped_because": dropped,
    }


def with_collisions(
    checked: list[dict[str, Any]], source: Source, stored: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Each checked entry with what its identity would meet: an earlier entry of the same
    feed (stored as one entry with it) and other sources already storing it (a global
    identity merges with theirs)."""
    first: dict[str, int] = {}
    for number, entry in enumerate(checked, start=1):
        entry["same_as_entry"] = first.setdefault(entry["identity"], number)
        if entry["same_as_entry"] == number:
            entry["same_as_entry"] = None
        entry["stored_from"] = [s for s in stored.get(entry["identity"], []) if s != source.id]
    return checked


def check_source(
    fetcher: Fetcher, source: Source, limit: int, now: datetime, database: Path | None = None
) -> dict[str, Any]:
    report: dict[str, Any] = {"id": source.id, "url": source.url, "ok": False}
    try:
        fetched = fetcher.fetch(
            source.url, headers=source.headers, allow_private=source.allow_private, now=now
        )
        feed = extract(source, fetched.body or b"", fetched.url, fetched.content_type, now)
    except (FetchError, ParseError) as exc:
        report["error"] = str(exc)
        return report
    entries = list(feed.entries)  # extract gave them their identities
    rules: dict[str, int] = {}
    for entry in entries:
        rules[entry.code_rule] = rules.get(entry.code_rule, 0) + 1
    checked = [check_entry(entry, source) for entry in entries]
    identities = [c["identity"] for c in checked if c["scope"] == Scope.GLOBAL.value]
    stored = carriers_of(database, identities) if database is not None else {}
    checked = with_collisions(checked, source, stored)
    report.update(
        ok=True,
        feed_title=feed.title,
        entries=len(entries),
        kept=sum(1 for c in checked if c["kept"]),
        configured_rule=source.share_code.name,
        share_code_rules=rules,
        scopes={s.value: sum(1 for c in checked if c["scope"] == s.value) for s in Scope},
        suggested_share_code_param=suggest_share_param([e.link for e in entries if e.link]),
        first=checked[:limit],
    )
    return report


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
    scopes = report["scopes"]
    click.echo(
        f"  identities: {scopes['global']} global (merge with any source's), "
        f"{scopes['source']} source-scoped (never merge with another source's)"
    )
    for index, entry in enumerate(report["first"], start=1):
        title = entry["title"] or f"(no title; shown as: {entry['shown_title']})"
        click.echo(f"  {index}. {title}")
        click.echo(f"     link: {entry['link'] or '-'}")
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
    config = _load(config_path)
    unknown = [s for s in source_ids if config.source(s) is None]
    if unknown:
        fail(f"no such source: {', '.join(unknown)}", EXIT_CONFIG)
    if config.settings.database.exists():  # its polls' state; nothing is written
        with _open_store(config) as store:
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
                source = replace(source, share_code=ShareCodeRule(**trial))
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
