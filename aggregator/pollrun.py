"""Poll many sources once, a bounded number at a time: the `aggregator poll` command.

The daemon has its scheduler; a one-off run uses a plain thread pool of
settings.workers, so a hundred sources do not take a hundred fetch times. On a
terminal, a long run shows a progress bar instead of scrolling lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import click

from aggregator.config import Source
from aggregator.fetch import Fetcher
from aggregator.poll import Clock, PollOutcome, poll_source, utc_now
from aggregator.sandbox import ParseLimits
from aggregator.store import Store

PROGRESS_MIN_SOURCES = 5  # fewer finish before a bar would tell anything


def wants_progress(is_tty: bool, count: int) -> bool:
    """A bar only for a person watching a run long enough to need one."""
    return is_tty and count >= PROGRESS_MIN_SOURCES


def poll_many(
    sources: Sequence[Source],
    store: Store,
    fetcher: Fetcher,
    workers: int,
    on_done: Callable[[PollOutcome], None] = lambda outcome: None,
    limits: ParseLimits | None = None,
    clock: Clock = utc_now,
) -> list[PollOutcome]:
    """Poll each source once, at most `workers` at a time.

    on_done is called in the calling thread as each poll finishes; the result
    is in the order of `sources`. poll_source never raises for a source's own
    failure, so one bad source stops nothing.
    """
    if not sources:
        return []
    by_id: dict[str, PollOutcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources)))) as pool:
        futures = [
            pool.submit(poll_source, source, store, fetcher, limits=limits, clock=clock)
            for source in sources
        ]
        for future in as_completed(futures):
            outcome = future.result()
            by_id[outcome.source_id] = outcome
            on_done(outcome)
    return [by_id[source.id] for source in sources]


def poll_interactive(
    sources: Sequence[Source],
    store: Store,
    fetcher: Fetcher,
    workers: int,
    describe: Callable[[PollOutcome], str],
    limits: ParseLimits | None = None,
) -> list[PollOutcome]:
    """poll_many with output: a line per source, or a bar on a terminal then the lines."""

    def line(outcome: PollOutcome) -> str:
        return f"{outcome.source_id}: {describe(outcome)}"

    if not wants_progress(sys.stderr.isatty(), len(sources)):
        return poll_many(sources, store, fetcher, workers, lambda o: click.echo(line(o)), limits)
    with click.progressbar(
        length=len(sources),
        label=f"polling {len(sources)} sources",
        file=sys.stderr,
        show_pos=True,
        item_show_func=lambda source_id: source_id,
    ) as bar:
        outcomes = poll_many(
            sources, store, fetcher, workers, lambda o: bar.update(1, o.source_id), limits
        )
    for outcome in outcomes:
        click.echo(line(outcome))
    return outcomes
