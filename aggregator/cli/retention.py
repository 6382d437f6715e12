"""`aggregator cleanup`: apply the retention limits now (the daemon does it daily)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from aggregator.cli.common import config_option, load, open_store
from aggregator.publish.publisher import Publisher
from aggregator.store.retention import cleanup


@click.command("cleanup")
@config_option
@click.option("--dry-run", is_flag=True, help="Only say how many entries would be removed.")
@click.option("--no-publish", is_flag=True, help="Do not regenerate the feeds afterwards.")
def cleanup_command(config_path: Path, dry_run: bool, no_publish: bool) -> None:
    """Remove entries beyond retain_for / retain_entries; they never come back."""
    config = load(config_path)
    with open_store(config) as store:
        store.sync_sources(config.sources)
        result = cleanup(store, config, datetime.now(UTC), dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        click.echo(f"{verb} {len(result.removed)} entries")
        if not dry_run and not no_publish:
            # Also finishes what a killed run left unpublished.
            publisher = Publisher(config, store)
            written = publisher.publish(result.changed_feeds)
            publisher.close()  # send any WebSub pings before exiting
            click.echo(f"published {len(written)} changed file(s)")
