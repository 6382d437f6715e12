"""`aggregator publish posts` and `aggregator import-posts DIR`."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from aggregator.cli.common import EXIT_CONFIG, EXIT_FAILED, config_option, load, open_store
from aggregator.config.loader import DEFAULT_CONFIG_PATH
from aggregator.publish.posts import PostWriter, describe_posts, import_posts


def _config_path(ctx: click.Context, given: Path | None) -> Path:
    """--config after the subcommand, else the one given to `publish`, else the default."""
    if given is not None:
        return given
    parent = ctx.parent.params.get("config_path") if ctx.parent else None
    return parent if isinstance(parent, Path) else DEFAULT_CONFIG_PATH


_config = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The sources config file (default: the one given to the parent command).",
)


@click.command("posts")
@_config
@click.pass_context
def publish_posts(ctx: click.Context, config_path: Path | None) -> None:
    """Write one static-site post per entry into [publish.posts] output_dir.

    New and edited articles are (re)written; unchanged posts are not touched.
    """
    config = load(_config_path(ctx, config_path))
    if not config.posts.enabled:
        click.echo(
            f"error: posts are not enabled: add a [publish.posts] table to {config.path}",
            err=True,
        )
        sys.exit(EXIT_CONFIG)
    with open_store(config) as store:
        store.sync_sources(config.sources)
        started = time.perf_counter()
        report = PostWriter(config, store).sync()
        took = time.perf_counter() - started
    click.echo(f"{describe_posts(report, config)} ({took:.2f}s)")


@click.command("import-posts")
@config_option
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
def import_posts_command(config_path: Path, folder: Path) -> None:
    """Import an existing site's posts (its _posts/ FOLDER) into the store.

    The share code comes from each post's share link (by the sources' share-code
    rules) or its share_code key; the category from its slug, the tags by name.
    Articles already stored are left as they are. Run `aggregator publish` after.
    """
    config = load(config_path)
    with open_store(config) as store:
        store.sync_sources(config.sources)
        report = import_posts(folder, config, store, datetime.now(UTC))
    for path, reason in report.failed:
        click.echo(f"{path}: {reason}", err=True)
    click.echo(
        f"imported {report.imported} post(s), {report.skipped} already stored, "
        f"{len(report.failed)} unreadable"
    )
    sys.exit(EXIT_FAILED if report.failed else 0)
