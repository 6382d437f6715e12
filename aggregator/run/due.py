"""Which sources a one-off command (`aggregator poll`, `sources check`) may fetch now.

Apart from run/pollrun.py, which polls them: a poll with nothing due imports none of
the fetching and parsing it would need."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from aggregator.config.loader import Config, Source
from aggregator.run.pacing import Hold, hold, standing
from aggregator.store.interface import Storage
from aggregator.store.records import SourceState


def choose_sources(
    config: Config,
    store: Storage | None,
    named: Sequence[str],
    *,
    every: bool = False,
    force: bool = False,
) -> tuple[list[Source], list[tuple[Source, Hold, SourceState]]]:
    """The sources a command may fetch now, and those it was asked for but may not,
    with why (pacing.hold): the named ones, or every enabled source due or not
    (every), or the due ones; a Retry-After window is overridden only by force.
    Without a store (no database yet) every source has a blank state."""
    asked = [s for s in (config.source(i) for i in named) if s] or config.enabled_sources
    ids = [s.id for s in asked]
    states = store.source_states(ids) if store else {i: SourceState(i) for i in ids}
    now = datetime.now(UTC)
    chosen: list[Source] = []
    held: list[tuple[Source, Hold, SourceState]] = []
    for source in asked:
        state = states[source.id]
        why = hold(standing(source, state), now, due_only=not (named or every), force=force)
        if why is None:
            chosen.append(source)
        elif why is not Hold.NOT_DUE:
            held.append((source, why, state))
    return chosen, held
