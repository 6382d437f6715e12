"""`aggregator migrate-store FROM TO`: copy the store between SQLite and PostgreSQL,
then check that both hold the same rows and publish the same bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from aggregator.cli.common import EXIT_FAILED, config_option, load
from aggregator.publish.publisher import Publisher
from aggregator.store.migrate import migrate_store, stores


def _progress(table: str, done: int, total: int) -> None:
    if done == 0 or done == total or done % 10_000 < 1000:
        click.echo(f"  {table}: {done}/{total}", err=True)


@click.command("migrate-store")
@config_option
@click.argument("source")
@click.argument("target")
@click.option(
    "--no-verify-feeds", is_flag=True, help="Compare row counts only, not the published feeds."
)
def migrate_store_command(
    config_path: Path, source: str, target: str, no_verify_feeds: bool
) -> None:
    """Copy the store at SOURCE into TARGET (an SQLite file and a postgresql:// URL, either
    way round); run again, it updates what changed and duplicates nothing. Stop the
    daemons using SOURCE first. Afterwards the row counts of every table are compared,
    and every feed document (current and archived, Atom and JSON) is rendered from both
    stores and compared byte for byte."""
    config = load(config_path)
    click.echo(f"copying {source} -> {target}", err=True)
    try:
        report = migrate_store(source, target, _progress)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for table, (there, here) in report.counts.items():
        click.echo(f"{table}: {there} -> {here}{'' if there == here else '  MISMATCH'}")
    if report.mismatched:
        click.echo(f"error: row counts differ in {', '.join(report.mismatched)}", err=True)
        sys.exit(EXIT_FAILED)
    if no_verify_feeds:
        return
    differing = _compare_feeds(config, source, target)
    if differing:
        click.echo(
            f"error: {len(differing)} feed document(s) differ, e.g. {differing[0]}", err=True
        )
        sys.exit(EXIT_FAILED)


def _compare_feeds(config: object, source: str, target: str) -> list[str]:
    """The paths of feed documents that the two stores render differently."""
    opened = list(stores(source, target))
    try:
        publishers = [Publisher(config, store) for store in opened]  # type: ignore[arg-type]
        keys = opened[0].feed_keys() | opened[1].feed_keys()
        differing: list[str] = []
        compared = 0
        for key in sorted(keys):
            there, here = (p.documents(key) for p in publishers)
            compared += len(there)
            differing += sorted(
                p for p in there.keys() | here.keys() if there.get(p) != here.get(p)
            )
        click.echo(
            f"feeds: {len(keys)}, documents compared: {compared}, differing: {len(differing)}"
        )
        return differing
    finally:
        for store in opened:
            store.close()
