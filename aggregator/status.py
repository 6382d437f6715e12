"""The operator's status report: every configured source's health and recent history.

One report feeds `aggregator status` (text and --json) and the daemon's /status and
/status.json, so they agree. gather_report reads the store; build_report, which
decides each source's health and the order (failing sources first), is pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aggregator.config import Config, Source
from aggregator.store import HISTORY_DAYS, PollDay, RecentPoll, StatusRows, Store, from_iso, iso

# Health, in the order the report lists it: what needs the operator comes first.
HEALTHS = ("failing", "stopped", "pending", "ok", "disabled")
FAILED_RESULTS = ("error", "gone")


@dataclass(frozen=True)
class Day:
    """A source's UTC day."""

    day: date
    failures: int = 0  # failed polls
    new_entries: int = 0  # entries it carried first


@dataclass(frozen=True)
class Poll:
    at: datetime
    result: str  # as PollOutcome.result: ok, not_modified, unchanged, error, gone
    http_status: int | None
    seconds: float | None  # fetch time; None when not measured (older polls)

    @property
    def failed(self) -> bool:
        return self.result in FAILED_RESULTS


@dataclass(frozen=True)
class SourceReport:
    id: str
    name: str
    url: str
    category: str
    tags: tuple[str, ...]
    interval: float
    enabled: bool
    share_code_rule: str
    health: str  # one of HEALTHS
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_result: str | None
    last_http_status: int | None
    last_fetch_seconds: float | None
    last_error: str | None
    last_error_at: datetime | None
    error_count: int
    next_poll_at: datetime | None
    moved_to: str | None
    disabled_reason: str | None
    entries: int
    days: tuple[Day, ...]  # HISTORY_DAYS UTC days, oldest first, today last
    recent: tuple[Poll, ...]  # the last polls, oldest first


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    entries: int  # stored in all
    sources: tuple[SourceReport, ...]  # failing first (see HEALTHS)

    @property
    def failing(self) -> int:
        """Sources whose last poll failed (stopped ones included)."""
        return sum(1 for s in self.sources if s.error_count)

    def count(self, health: str) -> int:
        return sum(1 for s in self.sources if s.health == health)


def health_of(enabled: bool, row: dict[str, Any]) -> str:
    """A source's health from its config switch and its stored state."""
    if not enabled:
        return "disabled"
    if row.get("disabled_reason"):
        return "stopped"  # the daemon no longer polls it (410 Gone)
    if row.get("error_count"):
        return "failing"
    if not row.get("last_poll_at"):
        return "pending"
    return "ok"


def history_days(today: date) -> list[date]:
    """The days the report shows: HISTORY_DAYS, oldest first, ending today."""
    return [today - timedelta(days=n) for n in range(HISTORY_DAYS - 1, -1, -1)]


def _days(rows: Iterable[PollDay], today: date) -> tuple[Day, ...]:
    by_day = {row.day: row for row in rows}
    days = []
    for day in history_days(today):
        row = by_day.get(day.isoformat())
        days.append(Day(day, row.failures, row.new_entries) if row else Day(day))
    return tuple(days)


def _source_report(
    source: Source,
    row: dict[str, Any],
    days: Sequence[PollDay],
    recent: Sequence[RecentPoll],
    today: date,
) -> SourceReport:
    return SourceReport(
        id=source.id,
        name=source.name,
        url=source.url,
        category=source.category,
        tags=source.tags,
        interval=source.interval,
        enabled=source.enabled,
        share_code_rule=source.share_code.name,
        health=health_of(source.enabled, row),
        last_poll_at=from_iso(row.get("last_poll_at")),
        last_success_at=from_iso(row.get("last_success_at")),
        last_result=row.get("last_result"),
        last_http_status=row.get("last_http_status"),
        last_fetch_seconds=row.get("last_fetch_seconds"),
        last_error=row.get("last_error"),
        last_error_at=from_iso(row.get("last_error_at")),
        error_count=row.get("error_count") or 0,
        next_poll_at=from_iso(row.get("next_poll_at")),
        moved_to=row.get("moved_to"),
        disabled_reason=row.get("disabled_reason"),
        entries=row.get("entry_count") or 0,
        days=_days(days, today),
        recent=tuple(Poll(p.at, p.result, p.http_status, p.fetch_seconds) for p in recent),
    )


def _rank(source: SourceReport) -> tuple[int, int, str]:
    """Failing first, the longest failing first; then by id."""
    return (HEALTHS.index(source.health), -source.error_count, source.id)


def build_report(sources: Sequence[Source], rows: StatusRows, now: datetime) -> StatusReport:
    """The report on the configured sources from what the store holds (sources the
    config no longer has are left out)."""
    stored = {row["id"]: row for row in rows.sources}
    days: dict[str, list[PollDay]] = {}
    for day in rows.days:
        days.setdefault(day.source_id, []).append(day)
    recent: dict[str, list[RecentPoll]] = {}
    for poll in rows.recent:
        recent.setdefault(poll.source_id, []).append(poll)
    today = now.astimezone(UTC).date()  # history is kept by UTC day
    reports = [
        _source_report(s, stored.get(s.id, {}), days.get(s.id, []), recent.get(s.id, []), today)
        for s in sources
    ]
    return StatusReport(now, rows.entries, tuple(sorted(reports, key=_rank)))


def gather_report(config: Config, store: Store, now: datetime) -> StatusReport:
    """The report, read from the store in one snapshot."""
    since = now - timedelta(days=HISTORY_DAYS)
    return build_report(config.sources, store.status_rows(since), now)


# --- JSON ------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def source_facts(source: SourceReport) -> dict[str, Any]:
    """A source's state as `aggregator status --json` and /status.json give it."""
    return {
        "id": source.id,
        "name": source.name,
        "url": source.url,
        "category": source.category,
        "tags": list(source.tags),
        "interval": source.interval,
        "enabled": source.enabled,
        "share_code_rule": source.share_code_rule,
        "health": source.health,
        "last_poll_at": _time(source.last_poll_at),
        "last_success_at": _time(source.last_success_at),
        "last_result": source.last_result,
        "last_http_status": source.last_http_status,
        "last_fetch_seconds": source.last_fetch_seconds,
        "last_error": source.last_error,
        "last_error_at": _time(source.last_error_at),
        "error_count": source.error_count,
        "next_poll_at": _time(source.next_poll_at),
        "moved_to": source.moved_to,
        "disabled_reason": source.disabled_reason,
        "entries": source.entries,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _history(source: SourceReport) -> dict[str, Any]:
    """A source's days as one list per measure (the report's "days" is their axis),
    and its recent polls, oldest first."""
    days = source.days
    return {
        "new_entries_per_day": [d.new_entries for d in days],
        "failures_per_day": [d.failures for d in days],
        "recent_polls": [
            {
                "at": iso(poll.at),
                "result": poll.result,
                "http_status": poll.http_status,
                "fetch_seconds": _rounded(poll.seconds),
            }
            for poll in source.recent
        ],
    }


def report_facts(report: StatusReport) -> dict[str, Any]:
    today = report.generated_at.astimezone(UTC).date()
    return {
        "generated_at": iso(report.generated_at),
        "entries": report.entries,
        "failing": report.failing,
        "health": {health: report.count(health) for health in HEALTHS},
        "days": [day.isoformat() for day in history_days(today)],
        "sources": [{**source_facts(s), **_history(s)} for s in report.sources],
    }


def report_json(report: StatusReport, indent: int | None = None) -> str:
    """The report as JSON: /status.json sends it compact, `aggregator status --json`
    indented; the same facts."""
    return json.dumps(report_facts(report), ensure_ascii=False, indent=indent)
