"""The operator's status report: every configured source's health and recent history.

One report feeds `aggregator status` (text and --json) and the daemon's /status and
/status.json, so they agree. gather_report reads the store; the rest, which decides
each source's health and the order (failing sources first), is pure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aggregator.config.loader import Config, Source
from aggregator.store.records import HISTORY_DAYS, PollDay, RecentPoll, StatusRows, from_iso, iso

if TYPE_CHECKING:  # only gather_report reads a store; the rest is pure
    from aggregator.store.interface import Storage

# What neither a terminal nor HTML should get from a source as it is: C0 and C1
# controls but tab (a terminal obeys escape sequences; a newline could fake a line),
# lone surrogates, noncharacters, and bidi overrides that make text read backwards.
_UNSAFE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)

# Health, in the order the report lists it: what needs the operator comes first.
HEALTHS = ("failing", "stopped", "pending", "ok", "disabled")
# Sources a page of the HTML report shows with their charts (/status?page=N).
PAGE_SIZE = 200


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
    # Its history, when the report was asked for it (else empty): per day of the
    # report's `days`, and its last polls, oldest first.
    new_entries_per_day: tuple[int, ...] = ()
    failures_per_day: tuple[int, ...] = ()
    recent: tuple[RecentPoll, ...] = ()


@dataclass(frozen=True)
class NodeReport:
    """A node of a cluster as the report shows it (aggregator.run.cluster decides)."""

    id: str
    state: str  # alive, stopped or dead
    last_seen: datetime
    polls_in_flight: int
    agrees: bool  # its config file is the cluster's accepted one


@dataclass(frozen=True)
class ClusterReport:
    """The nodes of a cluster on one PostgreSQL database, and who disagrees."""

    accepted_version: int | None  # None before any node ran
    accepted_by: str
    nodes: tuple[NodeReport, ...]
    problem: str = ""  # this node's own disagreement, as /healthz says it

    @property
    def disagreeing(self) -> tuple[NodeReport, ...]:
        """Nodes up whose config differs from the accepted one (they take no polls)."""
        return tuple(n for n in self.nodes if not n.agrees and n.state == "alive")


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    entries: int  # stored in all
    sources: tuple[SourceReport, ...]  # failing first (see HEALTHS)
    days: tuple[date, ...]  # HISTORY_DAYS UTC days, oldest first, today last
    page: int | None = None  # the page whose sources have their history; None: all
    cluster: ClusterReport | None = None  # the nodes, when the store is a cluster's

    @property
    def failing(self) -> int:
        """Sources whose last poll failed (stopped ones included)."""
        return sum(1 for s in self.sources if s.error_count)

    def count(self, health: str) -> int:
        return sum(1 for s in self.sources if s.health == health)

    @property
    def pages(self) -> int:
        return page_count(len(self.sources))

    @property
    def shown(self) -> tuple[SourceReport, ...]:
        """The sources of its page (all when it has no page)."""
        if self.page is None:
            return self.sources
        return self.sources[(self.page - 1) * PAGE_SIZE : self.page * PAGE_SIZE]


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """Text from a source (a name, an error a server sent) with its unsafe characters
    shown as escapes: "\\x1b", "\\u202e"."""
    return _UNSAFE.sub(_escaped, text)


def health_of(enabled: bool, row: Mapping[str, Any]) -> str:
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


def ranked(sources: Sequence[Source], rows: Mapping[str, Mapping[str, Any]]) -> list[Source]:
    """The sources in the report's order: by health (HEALTHS), the longest failing
    first, then by id."""

    def rank(source: Source) -> tuple[int, int, str]:
        row = rows.get(source.id, {})
        health = HEALTHS.index(health_of(source.enabled, row))
        return (health, -(row.get("error_count") or 0), source.id)

    return sorted(sources, key=rank)


def page_count(sources: int) -> int:
    return max(1, math.ceil(sources / PAGE_SIZE))


def page_of(sources: Sequence[Source], page: int | None) -> Sequence[Source]:
    if page is None:
        return sources
    return sources[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]


def history_days(today: date) -> tuple[date, ...]:
    """The days the report shows: HISTORY_DAYS, oldest first, ending today."""
    return tuple(today - timedelta(days=n) for n in range(HISTORY_DAYS - 1, -1, -1))


def _per_day(rows: Iterable[PollDay], index: Mapping[str, int]) -> tuple[list[int], list[int]]:
    """A source's day rows as two lists along the report's days (index: day -> place)."""
    new, failures = [0] * len(index), [0] * len(index)
    for row in rows:
        n = index.get(row.day)
        if n is not None:
            new[n], failures[n] = row.new_entries, row.failures
    return new, failures


def _source_report(
    source: Source,
    row: Mapping[str, Any],
    history: tuple[list[PollDay], list[RecentPoll]] | None,
    days: Mapping[str, int],
) -> SourceReport:
    new, failures = _per_day(history[0], days) if history else ([], [])
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
        new_entries_per_day=tuple(new),
        failures_per_day=tuple(failures),
        recent=tuple(history[1]) if history else (),
    )


def build_report(
    sources: Sequence[Source], rows: StatusRows, now: datetime, page: int | None = None
) -> StatusReport:
    """The report on the configured sources from what the store holds (sources the
    config no longer has are left out), with the history the rows have; `page` is
    the page of PAGE_SIZE sources the report shows (all when None)."""
    stored = {row["id"]: row for row in rows.sources}
    order = ranked(sources, stored)
    with_history = rows.history_for
    days: dict[str, list[PollDay]] = {}
    for day in rows.days:
        days.setdefault(day.source_id, []).append(day)
    recent: dict[str, list[RecentPoll]] = {}
    for poll in rows.recent:
        recent.setdefault(poll.source_id, []).append(poll)
    axis = history_days(now.astimezone(UTC).date())  # history is kept by UTC day
    index = {day.isoformat(): n for n, day in enumerate(axis)}
    reports = tuple(
        _source_report(
            source,
            stored.get(source.id, {}),
            (days.get(source.id, []), recent.get(source.id, []))
            if with_history is None or source.id in with_history
            else None,
            index,
        )
        for source in order
    )
    return StatusReport(now, rows.entries, reports, axis, page)


def gather_report(
    config: Config,
    store: Storage,
    now: datetime,
    *,
    page: int | None = None,
    history: bool = True,
    cluster: ClusterReport | None = None,
) -> StatusReport:
    """The report, read from the store in one snapshot: with the history of the
    sources on `page` (PAGE_SIZE a page, 1 first; past the last, the last), of all
    when None, of none when history is False; with the cluster's nodes as given."""
    if page is not None:
        page = min(page, page_count(len(config.sources)))

    def history_of(rows: list[dict[str, Any]]) -> list[str]:
        if not history:
            return []
        order = ranked(config.sources, {row["id"]: row for row in rows})
        return [source.id for source in page_of(order, page)]

    since = now - timedelta(days=HISTORY_DAYS)
    report = build_report(config.sources, store.status_rows(since, history_of), now, page)
    return replace(report, cluster=cluster)


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
        "last_fetch_seconds": _rounded(source.last_fetch_seconds),
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
    return {
        "new_entries_per_day": list(source.new_entries_per_day),
        "failures_per_day": list(source.failures_per_day),
        "recent_polls": [
            {
                "at": poll.at.isoformat(timespec="seconds")[:19] + "Z",
                "result": poll.result,
                "http_status": poll.http_status,
                "fetch_seconds": poll.fetch_seconds,
            }
            for poll in source.recent
        ],
    }


def cluster_facts(cluster: ClusterReport) -> dict[str, Any]:
    """The cluster's nodes and config agreement as /status.json gives them."""
    return {
        "accepted_config_version": cluster.accepted_version,
        "accepted_by": cluster.accepted_by,
        "problem": cluster.problem or None,
        "disagreeing": [node.id for node in cluster.disagreeing],
        "nodes": [
            {
                "id": node.id,
                "state": node.state,
                "last_seen": iso(node.last_seen),
                "polls_in_flight": node.polls_in_flight,
                "config_agrees": node.agrees,
            }
            for node in cluster.nodes
        ],
    }


def report_facts(report: StatusReport) -> dict[str, Any]:
    facts = {
        "generated_at": iso(report.generated_at),
        "entries": report.entries,
        "failing": report.failing,
        "health": {health: report.count(health) for health in HEALTHS},
        "days": [day.isoformat() for day in report.days],
        "sources": [{**source_facts(s), **_history(s)} for s in report.shown],
    }
    if report.cluster is not None:
        facts["cluster"] = cluster_facts(report.cluster)
    return facts


def report_json(report: StatusReport, indent: int | None = None) -> str:
    """The report as JSON: /status.json sends it compact, `aggregator status --json`
    indented; the same facts."""
    return json.dumps(report_facts(report), ensure_ascii=False, indent=indent)
