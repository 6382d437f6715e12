"""When to poll a source next. Pure functions over plain values.

On success: the source's interval, never earlier than the server's freshness
lifetime (Cache-Control / Expires) or the feed's <ttl>, each clamped to a
sane range. On failure: exponential backoff from the interval, capped, and
never earlier than Retry-After. A little random jitter spreads sources that
share an interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
        return delay + jitter(facts.interval, rand)
    exponent = max(0, facts.error_count - 1)
    backoff = min(facts.interval * (2.0 ** min(exponent, 32)), MAX_BACKOFF)
    # Jitter on backoff: between 75% and 100% of the step (capped step stays capped).
    delay = backoff * (0.75 + 0.25 * rand)
    if facts.retry_after is not None:
        delay = max(delay, min(facts.retry_after, MAX_RETRY_AFTER))
    return delay


def next_poll_at(now: datetime, facts: PollFacts, rand: float) -> datetime:
    return now + timedelta(seconds=delay_after(facts, rand))


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
