"""The ``aggregator`` command line (click). A thin layer over the modules.

Exit codes: 0 success; 1 a command ran but something failed (a source, a
check); 2 bad usage or a bad config file; 3 the database is busy or locked
by a running daemon.
"""

from __future__ import annotations

import atexit
import errno
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from aggregator import __version__
from aggregator.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LOCKED,
    config_failure,
    config_option,
    held_line,
    load,
    open_store,
    print_sources,
)
from aggregator.config.loader import Config, Source, load_config
from aggregator.errors import (
    AggregatorError,
    ConfigError,
    ConfigNotFound,
    StartError,
    StoreError,
)
from aggregator.run.due import choose_sources
from aggregator.store import slug_shelf

# Each command imports what it needs when it runs, and the command modules load when
# their command is asked for: a command pays for no other's imports (fetching, parsing,
# publishing, PostgreSQL and procrastinate), nor a poll with nothing due for polling's.
if TYPE_CHECKING:
    from aggregator.run.poll import PollOutcome
    from aggregator.serve.status import ClusterReport
    from aggregator.store.cluster import AcceptedConfig
    from aggregator.store.interface import Storage
    from aggregator.store.records import FeedKey

PROGRESS_MIN_SOURCES = 5  # fewer finish before a bar would tell anything


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))


class LazyGroup(click.Group):
    """A group some of whose commands are defined in other modules of this package,
    imported only when one of them is asked for (or listed, by --help)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})  # command name -> "module:attribute" of the command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


def subcommands(group: click.Group) -> dict[str, click.Command]:
    """Every command of a group, those defined in other modules included (for the docs)."""
    ctx = click.Context(group)
    found = ((name, group.get_command(ctx, name)) for name in group.list_commands(ctx))
    return {name: command for name, command in found if command is not None}


class Commands(LazyGroup):
    """The command group: an error a command did not handle becomes one line naming its
    cause and an exit status, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            config_failure(exc)
        except StoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_LOCKED)
        except AggregatorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # the reader went away (| head): click leaves quietly
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_FAILED)


@click.group(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy={
        "sources": "aggregator.cli.sources:sources",
        "import-opml": "aggregator.cli.opml:import_opml",
        "export-opml": "aggregator.cli.opml:export_opml",
        "import-posts": "aggregator.cli.posts:import_posts_command",
        "cleanup": "aggregator.cli.retention:cleanup_command",
        "migrate-store": "aggregator.cli.migrate:migrate_store_command",
    },
)
@click.version_option(__version__, prog_name="aggregator")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="How much to log to stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as one JSON object each.",
)
def main(log_level: str, log_format: str) -> None:
    """Collect news feeds, deduplicate articles by share code, republish Atom feeds."""
    setup_logging(log_level, log_format)


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the daemon: poll every source on its schedule, publish, serve over HTTP.

    Stops cleanly on Ctrl-C or SIGTERM; SIGHUP or editing the config file reloads it.
    """
    from aggregator.run.daemon import Daemon

    def ready(daemon: Daemon) -> None:
        assert daemon.server and daemon.publisher
        lines = [
            f"aggregator {__version__}: serving {daemon.server.url}/",
            "Published feeds (more appear as sources are polled):",
            *(f"  {url}" for url in daemon.publisher.feed_urls()),
        ]
        click.echo("\n".join(lines))  # one write: no log line lands inside the list

    def new_feeds(urls: list[str]) -> None:
        click.echo("\n".join(f"  {url}" for url in urls))

    daemon = Daemon(config_path, on_ready=ready, on_new_feeds=new_feeds)
    try:
        daemon.run_forever()
    except (StartError, OSError) as exc:
        click.echo(f"error: cannot start: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if daemon.abandoned_polls:
        # A poll stuck past the stop bound holds a worker thread Python would wait for;
        # the database is closed and consistent, so leave now.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


def wants_progress(is_tty: bool, count: int) -> bool:
    """A bar only for a person watching a run long enough to need one."""
    return is_tty and count >= PROGRESS_MIN_SOURCES


def poll_with_progress(
    sources: Sequence[Source],
    run_polls: Callable[[Callable[[PollOutcome], None]], list[PollOutcome]],
) -> list[PollOutcome]:
    """Run the polls, told of each as it finishes: a line per source, or on a terminal
    a bar while they run and the lines after."""

    def line(outcome: PollOutcome) -> str:
        return f"{outcome.source_id}: {outcome.describe()}"

    if not wants_progress(sys.stderr.isatty(), len(sources)):
        return run_polls(lambda outcome: click.echo(line(outcome)))
    with click.progressbar(
        length=len(sources),
        label=f"polling {len(sources)} sources",
        file=sys.stderr,
        show_pos=True,
        item_show_func=lambda source_id: source_id,
    ) as bar:
        outcomes = run_polls(lambda outcome: bar.update(1, outcome.source_id))
    for outcome in outcomes:
        click.echo(line(outcome))
    return outcomes


@main.command()
@config_option
@click.option(
    "--all",
    "poll_all",
    is_flag=True,
    help="Poll every enabled source, due or not (still never one stopped by 410 Gone, "
    "nor one inside a server's Retry-After window).",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --all or SOURCE_IDS: poll sources inside a server's Retry-After window too. "
    "Never a disabled source or one stopped by 410 Gone: `aggregator sources enable` those.",
)
@click.option("--no-publish", is_flag=True, help="Store only; do not regenerate the feeds.")
@click.argument("source_ids", nargs=-1)
def poll(
    config_path: Path, poll_all: bool, force: bool, no_publish: bool, source_ids: tuple[str, ...]
) -> None:
    """Poll the due sources once (or --all, or the SOURCE_IDS given), then publish.

    "Due or not" is all --all and SOURCE_IDS change: a source disabled in the config or
    stopped by 410 Gone, or inside a Retry-After window (unless --force), is skipped
    with the reason. Publishing also finishes whatever a killed run left unpublished.
    """
    config = load(config_path)
    unknown = [s for s in source_ids if config.source(s) is None]
    if unknown:
        raise click.BadParameter(f"no such source: {', '.join(unknown)}", param_hint="SOURCE_IDS")
    if force and not (poll_all or source_ids):
        raise click.UsageError("--force goes with --all or SOURCE_IDS")
    with open_store(config) as store:
        store.sync_sources(config.sources)
        chosen_sources, held = choose_sources(
            config, store, source_ids, every=poll_all, force=force
        )
        asked = bool(source_ids) or poll_all  # a plain poll passes over them quietly
        for source, why, state in held if asked else ():
            click.echo(held_line(source, why, state), err=bool(source_ids))
        outcomes = _poll_chosen(config, store, chosen_sources)
        # A named source that was not polled is a request not done.
        failed = sum(1 for o in outcomes if o.failed)
        failed += len(held) if source_ids else 0
        changed: set[FeedKey] = set().union(*(o.changed_feeds for o in outcomes))
        if not chosen_sources and not asked:
            click.echo("no source is due (use --all to poll every source)")
        if not no_publish:
            _publish_changed(config, store, changed)
    sys.exit(EXIT_FAILED if failed else 0)


def _poll_chosen(config: Config, store: Storage, chosen: Sequence[Source]) -> list[PollOutcome]:
    """Poll the chosen sources (nothing to import or open when there are none)."""
    if not chosen:
        return []
    from aggregator.fetch.fetcher import Fetcher
    from aggregator.fetch.request import Limits
    from aggregator.parse.limits import ParseLimits
    from aggregator.run.pollrun import poll_run

    settings = config.settings
    with Fetcher(Limits.from_settings(settings), settings.user_agent) as fetcher:
        return poll_with_progress(
            chosen,
            lambda on_done: poll_run(
                chosen,
                store,
                fetcher,
                settings.workers,
                on_done,
                ParseLimits.from_settings(settings),
            ),
        )


def _publish_changed(config: Config, store: Storage, changed: set[FeedKey]) -> None:
    """Publish what changed, and whatever a killed run left unpublished (nothing to
    load when neither: the common case of a cron poll with nothing due)."""
    from aggregator.publish.record import temp_left

    written: list[Path] = []
    output = config.settings.output_dir
    if changed or store.unpublished() or store.holes() or temp_left(output):
        from aggregator.publish.publisher import Publisher

        publisher = Publisher(config, store)
        written = publisher.publish(changed)
        publisher.close()  # send any WebSub pings before exiting
    click.echo(f"published {len(written)} changed file(s) in {config.settings.output_dir}")
    if config.posts.enabled:
        from aggregator.publish.posts import PostWriter, describe_posts

        click.echo(describe_posts(PostWriter(config, store).sync(), config))


@main.group(
    cls=LazyGroup,
    invoke_without_command=True,
    lazy={"posts": "aggregator.cli.posts:publish_posts"},
)
@config_option
@click.option(
    "--rebuild",
    is_flag=True,
    help="Render every feed again and rewrite old archive pages too (after changing"
    " base_url or feed names, or editing the database by other means).",
)
@click.pass_context
def publish(ctx: click.Context, config_path: Path, rebuild: bool) -> None:
    """Regenerate every published feed (and posts, when enabled) from the store.

    Unchanged files are left alone. A feed is rendered again when the store changed it,
    the config or the program changed, or its files are not the ones the last publish
    left (the folder's .publish.record says). `aggregator publish posts` writes only
    the posts.
    """
    if ctx.invoked_subcommand is not None:
        return
    from aggregator.publish.publisher import Publisher

    config = load(config_path)
    with open_store(config) as store:
        store.sync_sources(config.sources)
        publisher = Publisher(config, store)
        started = time.perf_counter()
        written = publisher.publish(rebuild=rebuild)
        publisher.close()
        took = time.perf_counter() - started
        click.echo(f"published {len(written)} changed file(s) in {took:.2f}s")
        for url in publisher.feed_urls():
            click.echo(f"  {url}")
        if config.posts.enabled:
            from aggregator.publish.posts import PostWriter, describe_posts

            click.echo(describe_posts(PostWriter(config, store).sync(), config))


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(config_path: Path, as_json: bool) -> None:
    """Show each source's state from the database, failing sources first: last poll,
    result, next poll, errors. --json gives what the daemon's /status.json gives,
    with each source's recent history."""
    from aggregator.serve.status import gather_report, report_json, source_facts

    config = load(config_path)
    now = datetime.now(UTC)
    cluster = None
    if isinstance(config.settings.database, str):  # a cluster's database
        from aggregator.run.cluster import cluster_nodes, cluster_report

        accepted, nodes = cluster_nodes(config.settings.database, now)
        cluster = cluster_report(accepted, nodes, _disagreement(config_path, accepted))
    with open_store(config) as store:
        report = gather_report(config, store, now, history=as_json, cluster=cluster)
    if as_json:
        click.echo(report_json(report, indent=2))
        return
    print_sources([source_facts(source) for source in report.sources])
    click.echo(
        f"{len(report.sources)} sources, {report.failing} failing, {report.entries} entries stored"
    )
    if cluster is not None:
        _print_nodes(cluster)


def _disagreement(config_path: Path, accepted: AcceptedConfig | None) -> str:
    """What is wrong with this config file in the cluster (empty: nothing)."""
    from aggregator.run.cluster import Agreement, config_digest

    if accepted is None:
        return ""
    try:
        digest = config_digest(config_path.read_bytes())
    except OSError:
        return ""
    return Agreement.of(accepted, digest).problem().replace("this node", "a node with this file")


def _print_nodes(cluster: ClusterReport) -> None:
    """The cluster's nodes: alive or not, last seen, polls in flight, config agreement."""
    from aggregator.serve.status import visible
    from aggregator.store.records import iso

    alive = sum(1 for n in cluster.nodes if n.state == "alive")
    click.echo(f"\n{len(cluster.nodes)} node(s), {alive} alive")
    for node in cluster.nodes:
        click.echo(
            f"  {visible(node.id)}  {node.state}  last seen {iso(node.last_seen)}  "
            f"polls in flight {node.polls_in_flight}  "
            f"config {'accepted' if node.agrees else 'DIFFERS from the accepted one'}"
        )
    if cluster.disagreeing:
        ids = ", ".join(visible(n.id) for n in cluster.disagreeing)
        click.echo(f"config disagreement: {ids} take(s) no polls until their file matches")
    if cluster.problem:
        click.echo(f"this config file: {cluster.problem}")


@main.group("config")
def config_group() -> None:
    """Work with the config file."""


@config_group.command("check")
@config_option
@click.option(
    "--fetch",
    is_flag=True,
    help="Also fetch every enabled html and json source and report a selector that matches "
    "nothing or a path that is not there.",
)
def config_check(config_path: Path, fetch: bool) -> None:
    """Validate the config file and print every problem at once, with line numbers.

    Selectors and paths are checked for their syntax; with --fetch, against what each
    page or API answers now (nothing is stored).
    """
    from aggregator.publish.formats import chosen as chosen_formats

    try:
        config = load_config(config_path, slug_shelf_at=slug_shelf)
        chosen_formats(config)  # the output formats are the publisher's to know
    except ConfigNotFound as exc:
        config_failure(exc)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) found", err=True)
        sys.exit(EXIT_CONFIG)
    found: list[str] = []
    if fetch:
        from aggregator.fetch.fetcher import Fetcher
        from aggregator.fetch.request import Limits
        from aggregator.run.probe import selector_problems

        limits = Limits.from_settings(config.settings)
        with Fetcher(limits, config.settings.user_agent) as fetcher:
            found = selector_problems(fetcher, config.enabled_sources, datetime.now(UTC))
    for line in found:
        click.echo(line, err=True)
    if found:
        click.echo(f"{len(found)} problem(s) found", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"{config_path}: ok, {len(config.sources)} sources")


def entry_point() -> None:
    try:
        main(prog_name="aggregator")  # `python -m aggregator` is the same command
    except SystemExit as exc:
        leave(exc)


def leave(exc: SystemExit) -> NoReturn:
    """Exit as Python would, but without tearing the interpreter down (freeing every
    module and object, which a short command notices): the exit handlers run and the
    output is flushed first. With other threads still running, a message for the exit
    status, or output that cannot be flushed, Python exits as usual and reports it."""
    code = 0 if exc.code is None else exc.code
    if not isinstance(code, int) or threading.active_count() > 1 or not _flushed():
        raise exc
    atexit._run_exitfuncs()  # logging's, multiprocessing's, weakref.finalize's
    if not _flushed():
        raise exc
    os._exit(code)


def _flushed() -> bool:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe, a closed stream
        return False
    return True
