"""``aggregator import-opml`` and ``aggregator export-opml``.

Import adds the feeds of a feed reader's OPML export to the config file (one
atomic, validated write; feeds already configured are skipped and listed).
Export writes the configured sources as OPML. Exit codes as in aggregator.cli.common:
0 done; 1 the OPML file cannot be read; 2 the config is invalid or the import
would make it invalid.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
import tomli

from aggregator.cli.common import EXIT_FAILED, apply_edit, config_option, fail, load, read_config
from aggregator.config import sourcefile
from aggregator.config.loader import database_exists
from aggregator.config.opml import OpmlError, build_opml, for_export, parse_opml, plan_import
from aggregator.files import write_if_changed
from aggregator.parse import iri
from aggregator.store import open_store

DEFAULT_CATEGORY = "Uncategorized"


@click.command("import-opml")
@config_option
@click.argument("opml_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--category",
    "default_category",
    default=DEFAULT_CATEGORY,
    show_default=True,
    help="Category of feeds that are in no folder.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be added; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_opml(
    config_path: Path, opml_file: Path, default_category: str, dry_run: bool, as_json: bool
) -> None:
    """Add the feeds of an OPML file (Feedly, Inoreader, Miniflux, FreshRSS, ...) to the config.

    The outermost folder of a feed becomes its category, inner folders and the
    OPML category attribute its tags. Feeds already configured (same URL) are
    skipped. Nothing is fetched.
    """
    try:
        parsed = parse_opml(opml_file.read_bytes())
    except OSError as exc:
        fail(f"cannot read {opml_file}: {exc.strerror or exc}", EXIT_FAILED)
        return
    except OpmlError as exc:
        fail(f"{opml_file}: {exc}", EXIT_FAILED)
        return
    text, _config = read_config(config_path)
    existing = tomli.loads(text).get("sources", []) if text else []
    added, skipped = plan_import(parsed.feeds, existing, default_category)
    skipped = [*parsed.skipped, *skipped]
    if added and not dry_run:
        apply_edit(config_path, lambda current: sourcefile.add_sources(current, added))
    if as_json:
        result = {"added": added, "skipped": [{"feed": f, "reason": r} for f, r in skipped]}
        click.echo(json.dumps({**result, "written": not dry_run}, ensure_ascii=False, indent=2))
        return
    verb = "would add" if dry_run else "added"
    for values in added:
        click.echo(f"{verb} {values['id']}  {values['name']}  [{values['category']}]")
    for feed, reason in skipped:
        click.secho(f"skipped {feed}: {reason}", fg="yellow")
    colour = "green" if added else None
    click.secho(f"{verb} {len(added)} source(s), skipped {len(skipped)}", fg=colour)


@click.command("export-opml")
@config_option
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (atomically) instead of standard output.",
)
@click.option(
    "--include-secrets",
    is_flag=True,
    help="Also export request headers, query parameters, request bodies and credentials in "
    "URLs (they may hold tokens).",
)
def export_opml(config_path: Path, output: Path | None, include_secrets: bool) -> None:
    """Write the configured sources as OPML 2.0, one folder per category, for another reader.

    Importing the file again (aggregator import-opml) gives back the same sources.
    Request headers, query parameters, request bodies and credentials in URLs are left out
    unless --include-secrets is given, and sources read from file: URLs always are; each
    omission is noted on stderr.
    """
    config = load(config_path)
    text = sourcefile.read(config_path)
    tables, notes = for_export(
        tomli.loads(text).get("sources", []), include_secrets=include_secrets
    )
    for note in notes:
        click.secho(note, fg="yellow", err=True)
    html_urls: dict[str, str] = {}
    if database_exists(config.settings.database):
        with open_store(config.settings.database) as store:
            links = {r["id"]: iri.link(r["feed_link"] or "") for r in store.source_rows()}
            html_urls = {source_id: link for source_id, link in links.items() if link}
    document = build_opml(
        tables, title=config.settings.title, now=datetime.now(UTC), html_urls=html_urls
    )
    if output is None:
        click.echo(document.decode("utf-8"), nl=False)
        return
    write_if_changed(output, document)
    click.echo(f"wrote {len(tables)} source(s) to {output}", err=True)
