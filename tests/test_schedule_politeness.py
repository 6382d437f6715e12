"""The pure next-poll decision: hints are lower bounds, backoff is capped, skips only delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aggregator.fetch.headers import parse_max_age, parse_retry_after
from aggregator.run.pacing import (
    MAX_BACKOFF,
    MAX_HINT,
    MAX_RETRY_AFTER,
    Hold,
    PollFacts,
    Standing,
    delay_after,
    hold,
    jitter,
    next_poll_at,
    outside_skips,
    retry_window_end,
)

NOW = datetime(2026, 1, 5, 10, 20, 30, tzinfo=UTC)  # a Monday

intervals = st.floats(min_value=60, max_value=7 * 86400)
rands = st.floats(min_value=0, max_value=1, exclude_max=True)
hints = st.none() | st.floats(min_value=0, max_value=365 * 86400)
hours = st.frozensets(st.integers(0, 23), max_size=23)
days = st.frozensets(st.integers(0, 6), max_size=6)


@given(interval=intervals, errors=st.integers(1, 200), retry=hints, rand=rands)
def test_failure_never_before_retry_after_and_never_beyond_the_caps(
    interval: float, errors: int, retry: float | None, rand: float
) -> None:
    facts = PollFacts(interval, succeeded=False, error_count=errors, retry_after=retry)
    delay = delay_after(facts, rand)
    if retry is not None:
        assert delay >= min(retry, MAX_RETRY_AFTER)
    assert delay <= max(MAX_BACKOFF, min(retry or 0, MAX_RETRY_AFTER))
    assert delay > 0


@given(interval=intervals, errors=st.integers(1, 60), rand=rands)
def test_backoff_grows_then_stays_capped(interval: float, errors: int, rand: float) -> None:
    now = delay_after(PollFacts(interval, False, error_count=errors), rand)
    later = delay_after(PollFacts(interval, False, error_count=errors + 1), rand)
    assert later >= now
    assert later <= MAX_BACKOFF


def test_backoff_is_exponential_with_jitter_and_resets_on_success() -> None:
    steps = [delay_after(PollFacts(600, False, error_count=n), 0.0) for n in range(1, 10)]
    assert steps[:5] == [450, 900, 1800, 3600, 7200]  # 75% of 600 * 2^n at the low end
    assert steps[-1] == MAX_BACKOFF * 0.75
    assert delay_after(PollFacts(600, False, error_count=3), 0.0) == 2400 * 0.75
    assert delay_after(PollFacts(600, True), 0.0) == 600  # success: back to the interval


@given(
    interval=intervals, max_age=hints, ttl=st.none() | st.integers(0, 10**6), period=hints, r=rands
)
def test_success_hints_are_lower_bounds_clamped(
    interval: float, max_age: float | None, ttl: int | None, period: float | None, r: float
) -> None:
    facts = PollFacts(interval, True, max_age=max_age, ttl_minutes=ttl, update_period=period)
    delay = delay_after(facts, r)
    assert delay >= interval
    for hint in (max_age, ttl * 60.0 if ttl is not None else None, period):
        if hint is not None:
            assert delay >= min(hint, MAX_HINT)
    assert delay <= max(interval, MAX_HINT) + jitter(interval, r)


@given(
    when=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    skip_hours=hours,
    skip_days=days,
)
def test_skips_only_delay_and_land_outside(
    when: datetime, skip_hours: frozenset[int], skip_days: frozenset[int]
) -> None:
    moved = outside_skips(when, skip_hours, skip_days)
    assert moved >= when
    assert moved - when < timedelta(days=7)
    assert moved.hour not in skip_hours and moved.weekday() not in skip_days


def test_skip_hours_and_days_examples() -> None:
    # 10:20 on Monday, hours 10-12 skipped: 13:20 the same day.
    moved = outside_skips(NOW, frozenset({10, 11, 12}), frozenset())
    assert moved == NOW.replace(hour=13)
    # Mondays skipped: Tuesday 00:20:30.
    assert outside_skips(NOW, frozenset(), frozenset({0})) == datetime(
        2026, 1, 6, 0, 20, 30, tzinfo=UTC
    )
    # A feed that skips every hour is not obeyed.
    assert outside_skips(NOW, frozenset(range(24)), frozenset()) == NOW
    assert outside_skips(NOW, frozenset(), frozenset(range(7))) == NOW


def test_next_poll_applies_skips_after_retry_after() -> None:
    facts = PollFacts(1800, False, error_count=1, retry_after=3600, skip_hours=frozenset({11, 12}))
    when = next_poll_at(NOW, facts, 0.5)
    assert when >= NOW + timedelta(seconds=3600)
    assert when.hour == 13


def test_header_parsers() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Mon, 05 Jan 2026 12:20:30 GMT", NOW) == 7200
    assert parse_retry_after("Mon, 05 Jan 2026 08:00:00 GMT", NOW) == 0  # in the past
    assert parse_retry_after("soon", NOW) is None
    assert parse_max_age({"cache-control": "public, max-age=600"}, NOW) == 600
    assert parse_max_age({"expires": "Mon, 05 Jan 2026 11:20:30 GMT"}, NOW) == 3600
    assert parse_max_age({"cache-control": "no-cache"}, NOW) is None


# --- whether a source may be fetched now: every command asks the same function ----------

LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(hours=1)


def test_due_or_not_is_all_that_all_and_named_sources_change() -> None:
    waiting = Standing(next_poll_at=LATER)
    assert hold(waiting, NOW, due_only=True) is Hold.NOT_DUE  # a plain poll, the daemon
    assert hold(waiting, NOW) is None  # --all, or the source named
    assert hold(Standing(next_poll_at=EARLIER), NOW, due_only=True) is None
    assert hold(Standing(), NOW, due_only=True) is None  # never polled: due


def test_disabled_and_gone_sources_are_never_fetched_even_forced() -> None:
    for due_only in (False, True):
        for force in (False, True):
            assert hold(Standing(enabled=False), NOW, due_only=due_only, force=force) is (
                Hold.DISABLED
            )
            stopped = Standing(stopped="410 Gone at 2026-01-05 09:00 UTC", next_poll_at=EARLIER)
            assert hold(stopped, NOW, due_only=due_only, force=force) is Hold.STOPPED


def test_a_retry_after_window_holds_until_it_ends_unless_forced() -> None:
    window = Standing(retry_not_before=LATER, next_poll_at=EARLIER)
    assert hold(window, NOW) is Hold.RETRY_AFTER
    assert hold(window, NOW, due_only=True) is Hold.RETRY_AFTER
    assert hold(window, NOW, force=True) is None
    assert hold(window, LATER) is None  # over
    assert hold(Standing(retry_not_before=EARLIER), NOW) is None


def test_the_retry_window_counts_from_the_answer_and_is_capped() -> None:
    assert retry_window_end(NOW, None) is None
    assert retry_window_end(NOW, 120) == NOW + timedelta(seconds=120)
    assert retry_window_end(NOW, 10 * MAX_RETRY_AFTER) == NOW + timedelta(seconds=MAX_RETRY_AFTER)
    assert retry_window_end(NOW, -5) == NOW


@given(interval=st.floats(min_value=1, max_value=3600), took=st.floats(0, 600), rand=rands)
def test_the_next_poll_after_a_failure_counts_from_when_it_ended(
    interval: float, took: float, rand: float
) -> None:
    """A 5 s source that timed out after 30 s is not due again at once."""
    started = NOW
    ended = started + timedelta(seconds=took)
    facts = PollFacts(interval, succeeded=False, error_count=1)
    when = next_poll_at(ended, facts, rand)
    assert when >= ended + timedelta(seconds=0.75 * interval)
    assert when > ended
