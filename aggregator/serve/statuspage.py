"""The status report as an HTML page with inline SVG charts: pure, report in, bytes out.

No JavaScript and nothing fetched from elsewhere: one document an operator can open
in any browser (or save). Every string that comes from a source, its config or its
server (names, URLs, errors) goes through `text`, which escapes it and shows control
and bidirectional-override characters as visible escapes (status.visible).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from aggregator.serve.status import (
    HEALTHS,
    PAGE_SIZE,
    ClusterReport,
    NodeReport,
    SourceReport,
    StatusReport,
    visible,
)
from aggregator.store.records import FAILED_RESULTS, RECENT_POLLS, RecentPoll

ERROR_SHOWN = 400  # characters of an error shown in the table (the JSON has it all)

# Chart geometry: one bar per day or poll.
BAR = 5  # pixels from one bar to the next
HEIGHT = 28
# Fetch times on one fixed log scale for every source, so bars compare down the page.
FETCH_FLOOR = 0.01  # seconds at the baseline
FETCH_CEILING = 60.0  # seconds at the top (the default fetch deadline)


def text(value: object) -> str:
    """Any value as HTML text or attribute content (double-quoted), its unsafe
    characters shown as escapes (status.visible)."""
    return html.escape(visible(str(value)), quote=True)


def _link(url: str) -> str:
    """A URL shown as a link when it is http(s), else as text."""
    shown = text(url)
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return f'<a href="{shown}" rel="noreferrer">{shown}</a>'
    return shown


def _utc(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None, now: datetime) -> str:
    """A time as "5 min ago" / "in 2 h", with the exact time in its title."""
    if value is None:
        return '<span class="none">never</span>'
    seconds = (value - now).total_seconds()
    span = abs(seconds)
    if span < 90:
        amount = f"{span:.0f} s"
    elif span < 5400:
        amount = f"{span / 60:.0f} min"
    elif span < 172_800:
        amount = f"{span / 3600:.1f} h"
    else:
        amount = f"{span / 86400:.1f} d"
    said = f"in {amount}" if seconds > 0 else f"{amount} ago"
    return f'<time datetime="{value.isoformat()}" title="{_utc(value)}">{said}</time>'


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


# --- charts -----------------------------------------------------------------------------


def _svg(label: str, width: int, paths: Sequence[tuple[str, str]]) -> str:
    """An inline SVG of bars: each path is (class, d) with one vertical stroke per bar."""
    drawn = "".join(f'<path class="{kind}" d="{d}"/>' for kind, d in paths if d)
    return (
        f'<svg class="chart" role="img" width="{width}" height="{HEIGHT + 4}" '
        f'viewBox="0 0 {width} {HEIGHT + 4}"><title>{text(label)}</title>'
        f'<path class="base" d="M0 {HEIGHT + 0.5}H{width}"/>{drawn}</svg>'
    )


def _bar(index: int, height: float, bottom: float = HEIGHT) -> str:
    return f"M{index * BAR + BAR / 2:g} {bottom:g}v{-height:.1f}"


def entries_chart(new_entries: Sequence[int], failures: Sequence[int]) -> str:
    """New entries per UTC day (bars scaled to the busiest day), with a red mark under
    each day that had a failed poll."""
    most = max(new_entries, default=0)
    bars = [_bar(i, max(1.0, HEIGHT * n / most)) for i, n in enumerate(new_entries) if n]
    marks = [_bar(i, 3, HEIGHT + 4) for i, n in enumerate(failures) if n]
    label = (
        f"New entries per UTC day over {len(new_entries)} days: {sum(new_entries)} in all, "
        f"at most {most} a day; {len(marks)} days with failed polls"
    )
    width = len(new_entries) * BAR
    return _svg(label, width, [("new", " ".join(bars)), ("fail", " ".join(marks))])


def fetch_height(seconds: float | None) -> float:
    """A fetch time's bar height on the fixed log scale (FETCH_FLOOR to FETCH_CEILING)."""
    if seconds is None:
        return 0.0
    low, high = math.log10(FETCH_FLOOR), math.log10(FETCH_CEILING)
    share = (math.log10(max(seconds, FETCH_FLOOR)) - low) / (high - low)
    return HEIGHT * min(1.0, share)


def fetch_chart(polls: Sequence[RecentPoll], slots: int) -> str:
    """The last polls' fetch times, oldest left: blue for a new document, grey for
    nothing new (304 or the same bytes), red for failures (never shorter than a
    quarter of the height, so a quick failure still shows)."""
    kinds: dict[str, list[str]] = {"fetched": [], "same": [], "fail": []}
    first = slots - len(polls)  # the newest poll at the right edge, as today is
    for i, poll in enumerate(polls, start=first):
        height = max(1.0, fetch_height(poll.fetch_seconds))
        if poll.result in FAILED_RESULTS:
            kinds["fail"].append(_bar(i, max(HEIGHT / 4, height)))
        elif poll.result == "ok":
            kinds["fetched"].append(_bar(i, height))
        else:
            kinds["same"].append(_bar(i, height))
    failed = sum(1 for p in polls if p.result in FAILED_RESULTS)
    timed = [p.fetch_seconds for p in polls if p.fetch_seconds is not None]
    label = (
        f"Fetch times of the last {len(polls)} polls, on a log scale from 10 ms to 60 s: "
        f"longest {_seconds(max(timed, default=None))}; {failed} failed"
    )
    return _svg(label, slots * BAR, [(kind, " ".join(d)) for kind, d in kinds.items()])


# --- the page ---------------------------------------------------------------------------

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}
.summary{margin:0 0 1em}
table{border-collapse:collapse;width:100%}
th,td{padding:.45em .6em;border-bottom:1px solid #ddd;vertical-align:top;text-align:left}
th{background:#f4f4f4;font-weight:600;white-space:nowrap}
tr.failing,tr.stopped{background:#fff1f0}
.badge{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em;color:#fff}
.badge.failing,.badge.stopped{background:#c0392b}.badge.ok{background:#2e8b57}
.badge.pending{background:#888}.badge.disabled{background:#b9b9b9}
.name{font-weight:600}.id{color:#666}
.url,.detail{font-size:.85em;color:#555;overflow-wrap:anywhere}
.error{color:#a61d10}.none{color:#999}
td.num,td.result,td.last-poll,td.next-poll{white-space:nowrap}
td.num{text-align:right}
.legend{font-size:.85em;color:#555;margin:0 0 1em}
.key{display:inline-block;width:.7em;height:.7em;margin:0 .25em 0 .6em}
.key.new{background:#2f6fb3}.key.same{background:#9fb3c8}.key.fail{background:#c0392b}
td.chart{white-space:nowrap}
.chart .base{stroke:#ccc;stroke-width:1}
.chart path{fill:none;stroke-width:4}
.chart .new,.chart .fetched{stroke:#2f6fb3}.chart .same{stroke:#9fb3c8}
.chart .fail{stroke:#c0392b}
.caption{display:block;font-size:.8em;color:#666}
.problem{background:#fff1f0;border-left:4px solid #c0392b;padding:.5em .8em;margin:0 0 1em}
#nodes{width:auto;margin:0 0 1.5em}
.badge.alive{background:#2e8b57}.badge.dead{background:#c0392b}
.badge.stopped-node{background:#888}
tr.differs{background:#fff1f0}
"""


def _details(source: SourceReport, now: datetime) -> str:
    lines = [f'<div class="url">{_link(source.url)}</div>']
    if source.moved_to:
        lines.append(f'<div class="detail moved">moved to {_link(source.moved_to)}</div>')
    if source.disabled_reason:
        lines.append(
            f'<div class="detail error stopped">stopped: {text(source.disabled_reason)}</div>'
        )
    if source.error_count and source.last_error:
        error = source.last_error
        if len(error) > ERROR_SHOWN:
            error = error[:ERROR_SHOWN] + "…"
        lines.append(
            f'<div class="detail error last-error">last error '
            f"({_ago(source.last_error_at, now)}): {text(error)}</div>"
        )
    return "".join(lines)


def _result(source: SourceReport) -> str:
    if source.last_result is None:
        return '<span class="none">never polled</span>'
    said = text(source.last_result.replace("_", " "))
    if source.last_http_status:
        said += f" (HTTP {text(source.last_http_status)})"
    return f'{said}<span class="caption">fetch {_seconds(source.last_fetch_seconds)}</span>'


def _next_poll(source: SourceReport, now: datetime) -> str:
    if not source.enabled or source.disabled_reason:  # not polled any more
        return '<span class="none">-</span>'
    return _ago(source.next_poll_at, now)


def _row(source: SourceReport, now: datetime, slots: int) -> str:
    new = source.new_entries_per_day
    timed = [p.fetch_seconds for p in source.recent if p.fetch_seconds is not None]
    health = text(source.health)
    return (
        f'<tr id="source-{text(source.id)}" class="{health}" data-health="{health}">'
        f'<td><span class="badge {health}">{health}</span></td>'
        f'<td class="source"><span class="name">{text(source.name)}</span> '
        f'<code class="id">{text(source.id)}</code>{_details(source, now)}</td>'
        f'<td class="last-poll">{_ago(source.last_poll_at, now)}</td>'
        f'<td class="result">{_result(source)}</td>'
        f'<td class="num errors">{source.error_count}</td>'
        f'<td class="next-poll">{_next_poll(source, now)}</td>'
        f'<td class="num entries">{source.entries}</td>'
        f'<td class="chart new-entries">{entries_chart(new, source.failures_per_day)}'
        f'<span class="caption">{new[-1] if new else 0} today · {sum(new)} in {len(new)} days'
        "</span></td>"
        f'<td class="chart fetch-times">{fetch_chart(source.recent, slots)}'
        f'<span class="caption">longest {_seconds(max(timed, default=None))}</span></td>'
        "</tr>"
    )


def _node_row(node: NodeReport, now: datetime) -> str:
    state = text(node.state)
    badge = "stopped-node" if node.state == "stopped" else state
    config = "accepted" if node.agrees else "DIFFERS from the accepted one: takes no polls"
    return (
        f'<tr class="node{"" if node.agrees else " differs"}" data-state="{state}">'
        f"<td><code>{text(node.id)}</code></td>"
        f'<td><span class="badge {badge}">{state}</span></td>'
        f'<td class="last-seen">{_ago(node.last_seen, now)}</td>'
        f'<td class="num in-flight">{node.polls_in_flight}</td>'
        f'<td class="config">{config}</td></tr>'
    )


def _cluster(cluster: ClusterReport | None, now: datetime) -> str:
    """The cluster's nodes, and any config disagreement above them."""
    if cluster is None:
        return ""
    problems = [f'<p class="problem this-node">This node: {text(cluster.problem)}</p>']
    problems = problems if cluster.problem else []
    if cluster.disagreeing:
        names = ", ".join(f"<code>{text(n.id)}</code>" for n in cluster.disagreeing)
        problems.append(
            f'<p class="problem disagreement">{len(cluster.disagreeing)} node(s) up with a '
            f"config that differs from the accepted one, taking no polls: {names}</p>"
        )
    accepted = (
        "no accepted config yet"
        if cluster.accepted_version is None
        else f"accepted config version {cluster.accepted_version} "
        f"(from <code>{text(cluster.accepted_by)}</code>)"
    )
    alive = sum(1 for n in cluster.nodes if n.state == "alive")
    rows = "".join(_node_row(node, now) for node in cluster.nodes)
    return (
        f'<h2>Nodes</h2>{"".join(problems)}<p class="summary nodes-summary">'
        f"{len(cluster.nodes)} node(s), {alive} alive · {accepted}</p>"
        '<table id="nodes"><thead><tr><th>node</th><th>state</th><th>last seen</th>'
        "<th>polls in flight</th><th>config</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _pages(report: StatusReport) -> str:
    """Links to the other pages, when the sources do not fit on one."""
    if report.pages == 1:
        return ""
    links = [
        f"<strong>{n}</strong>" if n == report.page else f'<a href="?page={n}">{n}</a>'
        for n in range(1, report.pages + 1)
    ]
    return f'<p class="pages">Page {" ".join(links)} ({PAGE_SIZE} sources a page)</p>'


def render_html(report: StatusReport, recent_slots: int = RECENT_POLLS) -> bytes:
    """The whole page: the report's summary, and its page of sources with their
    charts; recent_slots is how many polls a fetch-time chart has room for."""
    now = report.generated_at
    total = len(report.sources)
    counts = [
        f'<strong class="{h}">{report.count(h)} {h}</strong>' for h in HEALTHS if report.count(h)
    ]
    title = f"aggregator: {report.count('failing')} of {total} sources failing"
    rows = "".join(_row(source, now, recent_slots) for source in report.shown)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{text(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        "<h1>Sources</h1>"
        f'<p class="summary">{total} sources: {", ".join(counts) or "none"} · '
        f"{report.entries} entries stored · as of {_utc(now)} · "
        '<a href="status.json">JSON</a></p>'
        f"{_cluster(report.cluster, now)}"
        '<p class="legend">Charts, oldest left:'
        '<span class="key new"></span>new entries, or a poll that fetched a new document'
        '<span class="key same"></span>a poll with nothing new (304, same bytes)'
        '<span class="key fail"></span>a failed poll (under the days: a day with one).'
        " Fetch times on one log scale, 10 ms to 60 s.</p>"
        f"{_pages(report)}"
        '<table id="sources"><thead><tr><th>health</th><th>source</th><th>last poll</th>'
        "<th>result</th><th>errors in a row</th><th>next poll</th><th>entries</th>"
        "<th>new entries per UTC day</th><th>fetch times, last polls</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{_pages(report)}</body></html>\n"
    )
    return page.encode("utf-8", errors="replace")
