"""The pacing of polls: when to poll a source next, and whether it may be fetched now.
Pure functions over plain values.

On success: the source's interval, never earlier than the server's freshness
lifetime (Cache-Control / Expires), the feed's <ttl> or its sy:updatePeriod,
each clamped to a sane range. On failure: exponential backoff from the
interval, capped, and never earlier than Retry-After. A little random jitter
spreads sources that share an interval. Either way the time found is then
moved out of the feed's <skipHours> / <skipDays>, which only ever delays, and
it counts from when the poll ended (its answer or its failure came), not from
when it started.

Whatever asks (the daemon, `poll`, `poll --all`, `sources check`), a source
disabled in the config or stopped by 410 Gone is not fetched, nor one inside
a server's Retry-After window unless the operator forces it (see hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: deciding imports neither the config loader nor the store
    from aggregator.config.loader import Source
    from aggregator.store.records import SourceState

MAX_BACKOFF = 24 * 3600.0
MAX_HINT = 24 * 3600.0  # a server's max-age or ttl never pushes a poll further than this
MAX_RETRY_AFTER = 7 * 24 * 3600.0
JITTER_FRACTION = 0.1
MAX_JITTER = 300.0


@dataclass(frozen=True)
class PollFacts:
    """What the last poll told us about when to come back."""

    interval: float
    succeeded: bool
    error_count: int = 0  # consecutive failures, including this one
    retry_after: float | None = None
    max_age: float | None = None
    ttl_minutes: int | None = None
    update_period: float | None = None  # seconds, from sy:updatePeriod / updateFrequency
    skip_hours: frozenset[int] = frozenset()  # UTC hours 0-23 not to poll in
    skip_days: frozenset[int] = frozenset()  # UTC weekdays not to poll on, 0 = Monday


def jitter(interval: float, rand: float) -> float:
    """rand in [0, 1): up to 10% of the interval, at most five minutes."""
    return min(interval * JITTER_FRACTION, MAX_JITTER) * rand


def delay_after(facts: PollFacts, rand: float) -> float:
    """Seconds until the next poll."""
    if facts.succeeded:
        delay = facts.interval
        if facts.max_age is not None:
            delay = max(delay, min(facts.max_age, MAX_HINT))
        if facts.ttl_minutes is not None:
            delay = max(delay, min(facts.ttl_minutes * 60.0, MAX_HINT))
        if facts.update_period is not None:
            delay = max(delay, min(facts.update_period, MAX_HINT))
        return delay + jitter(facts.interval, rand)
    exponent = max(0, facts.error_count - 1)
    backoff = min(facts.interval * (2.0 ** min(exponent, 32)), MAX_BACKOFF)
    # Jitter on backoff: between 75% and 100% of the step (capped step stays capped).
    delay = backoff * (0.75 + 0.25 * rand)
    if facts.retry_after is not None:
        delay = max(delay, min(facts.retry_after, MAX_RETRY_AFTER))
    return delay


def outside_skips(
    when: datetime, skip_hours: frozenset[int], skip_days: frozenset[int]
) -> datetime:
    """The first time at or after `when` outside the skipped UTC hours and days.

    A moved time keeps its minutes and seconds within the first allowed hour,
    so sources that share a skip list stay spread. A feed that skips every
    hour or every day is ignored rather than obeyed: it would never be polled.
    """
    hours = {h for h in skip_hours if 0 <= h <= 23}
    days = {d for d in skip_days if 0 <= d <= 6}
    if len(hours) == 24 or len(days) == 7 or not (hours or days):
        return when
    utc = when.astimezone(UTC)
    hour = utc.replace(minute=0, second=0, microsecond=0)
    for step in range(24 * 8):
        if hour.hour not in hours and hour.weekday() not in days:
            return when if step == 0 else hour + (utc - utc.replace(minute=0, second=0))
        hour += timedelta(hours=1)
    return when  # pragma: no cover - an allowed hour always comes within a week


def next_poll_at(ended: datetime, facts: PollFacts, rand: float) -> datetime:
    """When to poll next, counted from when the poll ended: a source polled every 5 s
    that timed out after 30 s waits its backoff from the failure, it is not due at once."""
    when = ended + timedelta(seconds=delay_after(facts, rand))
    return outside_skips(when, facts.skip_hours, facts.skip_days)


def retry_window_end(ended: datetime, retry_after: float | None) -> datetime | None:
    """Until when a server's Retry-After keeps every command away (counted from its
    answer, capped as in delay_after); None when it sent none."""
    if retry_after is None:
        return None
    return ended + timedelta(seconds=min(max(retry_after, 0.0), MAX_RETRY_AFTER))


class Hold(Enum):
    """Why a source may not be fetched now."""

    DISABLED = "disabled in the config"
    STOPPED = "stopped"  # by the server: 410 Gone (the store's disabled_reason)
    RETRY_AFTER = "asked to wait (Retry-After)"
    NOT_DUE = "not due"


@dataclass(frozen=True)
class Standing:
    """What the config and the source's past polls say about fetching it now."""

    enabled: bool = True  # in the config
    stopped: str | None = None  # why the store stopped it (410 Gone), or None
    retry_not_before: datetime | None = None  # the end of a Retry-After window
    next_poll_at: datetime | None = None


def standing(source: Source, state: SourceState) -> Standing:
    """What hold weighs for a source: its config and its stored state."""
    return Standing(
        enabled=source.enabled,
        stopped=state.disabled_reason,
        retry_not_before=state.retry_not_before,
        next_poll_at=state.next_poll_at,
    )


def hold(
    standing: Standing, now: datetime, *, due_only: bool = False, force: bool = False
) -> Hold | None:
    """None when a source may be fetched now, else why not. A source disabled in the
    config or stopped by 410 Gone waits for `sources enable`, whatever is asked; a
    Retry-After window is kept unless forced; due_only also waits for the next poll
    time (a plain `poll`: "due or not" is what --all and named sources mean)."""
    if not standing.enabled:
        return Hold.DISABLED
    if standing.stopped:
        return Hold.STOPPED
    window = standing.retry_not_before
    if not force and window is not None and now < window:
        return Hold.RETRY_AFTER
    if due_only and standing.next_poll_at is not None and now < standing.next_poll_at:
        return Hold.NOT_DUE
    return None


START_SPACING = 0.5  # seconds between sources that are due at start, on average
MAX_START_WINDOW = 60.0


def start_window(due_count: int, interval: float) -> float:
    """How long to spread the sources that are due when the daemon starts:
    a few seconds for a handful, at most a minute, never beyond the interval."""
    return min(due_count * START_SPACING, MAX_START_WINDOW, interval / 10)


def first_poll_at(
    now: datetime, stored: datetime | None, interval: float, rand: float, due_count: int = 1
) -> datetime:
    """When a daemon starting now polls a source first.

    A persisted next-poll time in the future is kept (a restart forgets no
    Retry-After or backoff). Sources already due are spread over a short
    window instead of all firing at once.
    """
    if stored is not None and stored > now:
        return stored
    return now + timedelta(seconds=start_window(due_count, interval) * rand)
