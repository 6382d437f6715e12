"""The status report and its page on their own: health and order decided from plain
data, every source-controlled string escaped, the charts drawn from the history."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import lxml.html
from hypothesis import given
from hypothesis import strategies as st

from aggregator.config.loader import Source, load_config
from aggregator.serve.status import (
    HEALTHS,
    PAGE_SIZE,
    ClusterReport,
    NodeReport,
    build_report,
    gather_report,
    history_days,
    report_facts,
)
from aggregator.serve.statuspage import (
    HEIGHT,
    entries_chart,
    fetch_chart,
    fetch_height,
    render_html,
    text,
)
from aggregator.store.records import (
    HISTORY_DAYS,
    RECENT_POLLS,
    PollDay,
    PollRecord,
    RecentPoll,
    StatusRows,
    iso,
)
from aggregator.store.sqlite import SqliteStore

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
HOSTILE = "<script>alert(\"x\")</script> & 'quotes' \x00\x07\x1b[31m\u202eevil\ud800\x85"


def source(source_id: str, **kwargs: Any) -> Source:
    values: dict[str, Any] = {
        "name": source_id,
        "url": f"https://example.org/{source_id}.xml",
        "category": "news",
    }
    values.update(kwargs)
    return Source(source_id, **values)


def row(source_id: str, **values: Any) -> dict[str, Any]:
    defaults = {"last_poll_at": iso(NOW - timedelta(minutes=5)), "error_count": 0}
    return {"id": source_id, **defaults, **values}


def report_of(sources: list[Source], rows: list[dict[str, Any]], **history: Any) -> Any:
    status_rows = StatusRows(rows, history.get("days", []), history.get("recent", []), 7)
    return build_report(sources, status_rows, NOW)


def test_failing_sources_come_first_and_each_has_a_health() -> None:
    sources = [
        source("fine"),
        source("new"),
        source("off", enabled=False),
        source("bad-once"),
        source("gone"),
        source("bad-long"),
    ]
    rows = [
        row("fine"),
        row("off"),
        row("bad-once", error_count=1, last_result="error"),
        row("gone", error_count=1, disabled_reason="410 Gone at 2026-03-01 10:00 UTC"),
        row("bad-long", error_count=9, last_result="error"),
        row("removed-from-config", error_count=3),
    ]
    report = report_of(sources, rows)
    assert [(s.id, s.health) for s in report.sources] == [
        ("bad-long", "failing"),
        ("bad-once", "failing"),
        ("gone", "stopped"),
        ("new", "pending"),
        ("fine", "ok"),
        ("off", "disabled"),
    ]
    assert report.failing == 3 and report.entries == 7
    facts = report_facts(report)
    assert facts["health"] == dict(zip(HEALTHS, (2, 1, 1, 1, 1), strict=True))
    # Every fact the page shows of a source is in the JSON too.
    for key in (
        "last_poll_at",
        "last_result",
        "last_http_status",
        "error_count",
        "last_error",
        "next_poll_at",
        "moved_to",
        "disabled_reason",
        "entries",
        "new_entries_per_day",
        "recent_polls",
    ):
        assert key in facts["sources"][0]


def test_history_is_thirty_utc_days_ending_today_and_the_last_polls() -> None:
    today = NOW.date()
    days = [
        PollDay("a", (today - timedelta(days=2)).isoformat(), 1, 3),
        PollDay("a", today.isoformat(), 0, 5),
        PollDay("b", today.isoformat(), 0, 1),
    ]
    recent = [
        RecentPoll("a", NOW - timedelta(minutes=10), "ok", 200, 0.3),
        RecentPoll("a", NOW, "error", 503, None),
    ]
    report = report_of([source("a")], [row("a")], days=days, recent=recent)
    (a,) = report.sources
    assert report.days == history_days(today)
    assert len(report.days) == HISTORY_DAYS and report.days[-1] == today
    assert a.new_entries_per_day[-3:] == (3, 0, 5) and sum(a.new_entries_per_day) == 8
    assert a.failures_per_day[-3:] == (1, 0, 0)
    assert [p.result for p in a.recent] == ["ok", "error"]
    facts = report_facts(report)
    assert facts["days"][-1] == today.isoformat() and len(facts["days"]) == HISTORY_DAYS
    assert facts["sources"][0]["new_entries_per_day"][-3:] == [3, 0, 5]


@given(st.text())
def test_text_leaves_no_markup_and_no_unsafe_character(value: str) -> None:
    shown = text(value)
    assert not set(shown) & set("<>\"'")
    assert not re.search(
        "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]", shown
    )
    assert "&" not in re.sub(r"&(amp|lt|gt|quot|#x27);", "", shown)


def test_text_shows_control_characters_as_escapes() -> None:
    assert text("a\x07b\u202ec\n\t") == "a\\x07b\\u202ec\\x0a\t"
    assert text('<b title="x">') == "&lt;b title=&quot;x&quot;&gt;"


def test_every_source_controlled_string_is_escaped_on_the_page() -> None:
    hostile = source(
        "hostile",
        name=HOSTILE,
        url='javascript:alert("url")',
        category=HOSTILE,
    )
    moved = source("moved", name="moved", url='https://example.org/a"onmouseover="alert(1)')
    rows = [
        row(
            "hostile",
            error_count=2,
            last_result="error<b>",
            last_http_status=500,
            last_error=HOSTILE,
            last_error_at=iso(NOW),
            disabled_reason=HOSTILE,
        ),
        row("moved", moved_to='https://x.example/"><script>alert(2)</script>'),
    ]
    page = render_html(report_of([hostile, moved], rows)).decode("utf-8")
    assert "<script" not in page.lower() and "<b>" not in page
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", page)
    dom = lxml.html.document_fromstring(page)
    assert not dom.xpath("//script") and not dom.xpath("//b")
    assert not [a for e in dom.iter() for a in e.attrib if a.lower().startswith("on")]
    hrefs = dom.xpath("//a/@href")
    assert not [h for h in hrefs if not h.startswith(("https://", "status.json"))]
    shown = HOSTILE.replace("\x00", "\\x00").replace("\x07", "\\x07").replace("\x1b", "\\x1b")
    shown = shown.replace("\u202e", "\\u202e").replace("\ud800", "\\ud800")
    shown = shown.replace("\x85", "\\x85")
    name = dom.xpath("//tr[@id='source-hostile']//*[@class='name']")[0].text_content()
    assert name == shown
    error = dom.xpath("//tr[@id='source-hostile']//*[contains(@class,'last-error')]")[0]
    assert shown in error.text_content()
    assert "alert(2)</script>" in dom.xpath("//tr[@id='source-moved']")[0].text_content()


def test_long_errors_are_cut_on_the_page_not_in_the_json() -> None:
    report = report_of(
        [source("a")], [row("a", error_count=1, last_error="x" * 5000, last_error_at=iso(NOW))]
    )
    page = render_html(report).decode()
    assert "x" * 400 + "…" in page and "x" * 401 not in page
    assert report_facts(report)["sources"][0]["last_error"] == "x" * 5000


def bars(svg: str, kind: str) -> int:
    found = re.search(f'<path class="{kind}" d="([^"]*)"', svg)
    return found.group(1).count("M") if found else 0


def test_the_entries_chart_has_a_bar_per_day_with_entries_and_marks_failing_days() -> None:
    report = report_of(
        [source("a")],
        [row("a")],
        days=[
            PollDay("a", (NOW.date() - timedelta(days=n)).isoformat(), n % 2, n) for n in range(6)
        ],
    )
    (a,) = report.sources
    svg = entries_chart(a.new_entries_per_day, a.failures_per_day)
    assert bars(svg, "new") == 5  # days 1..5 (day 0 brought none)
    assert bars(svg, "fail") == 3  # days 1, 3, 5
    assert "15 in all, at most 5 a day; 3 days with failed polls" in svg


def test_fetch_times_share_one_log_scale_and_the_newest_poll_is_at_the_right() -> None:
    assert fetch_height(0.001) == fetch_height(0.01) == 0
    assert fetch_height(60) == fetch_height(600) == HEIGHT
    assert 0 < fetch_height(0.1) < fetch_height(1) < fetch_height(10) < HEIGHT
    polls = [
        RecentPoll("a", NOW, "ok", 200, 0.2),
        RecentPoll("a", NOW, "not_modified", 304, 0.05),
        RecentPoll("a", NOW, "error", None, None),
    ]
    report = report_of([source("a")], [row("a")], recent=polls)
    svg = fetch_chart(report.sources[0].recent, RECENT_POLLS)
    assert (bars(svg, "fetched"), bars(svg, "same"), bars(svg, "fail")) == (1, 1, 1)
    right = RECENT_POLLS * 5 - 2.5  # the last slot's middle
    assert f'<path class="fail" d="M{right:g} ' in svg


def test_the_page_shows_its_share_of_sources_failing_first(write_config: Any) -> None:
    """Thousands of sources do not make one huge page: PAGE_SIZE a page, failing first,
    and only the sources shown have their history read."""
    count = PAGE_SIZE + 5
    config = load_config(
        write_config(
            [
                {
                    "id": f"s{n:04d}",
                    "name": f"S{n}",
                    "url": f"https://x.example/{n}",
                    "category": "c",
                }
                for n in range(count)
            ]
        )
    )
    failing = f"s{count - 1:04d}"  # last by id, first by health
    with SqliteStore(config.settings.database) as store:
        store.record_polls(
            [
                (s.id, PollRecord(last_poll_at=NOW, last_result="ok", error_count=0))
                for s in config.sources
            ]
        )
        store.record_poll(failing, PollRecord(last_poll_at=NOW, last_result="error", error_count=1))
        first = gather_report(config, store, NOW, page=1)
        second = gather_report(config, store, NOW, page=2)
        everything = gather_report(config, store, NOW)
        bare = gather_report(config, store, NOW, history=False)
    assert first.shown[0].id == failing and len(first.shown) == PAGE_SIZE
    assert [s.id for s in second.shown] == [f"s{n:04d}" for n in range(PAGE_SIZE - 1, count - 1)]
    assert len(first.shown[0].recent) == 2 and len(second.shown[0].recent) == 1
    assert not [s for s in first.sources if s not in first.shown and s.recent]
    assert all(s.recent for s in everything.sources) and not any(s.recent for s in bare.sources)
    page = lxml.html.document_fromstring(render_html(second))
    assert len(page.xpath("//tbody/tr")) == 5
    assert page.xpath("//p[@class='pages']//a/@href") == ["?page=1"] * 2  # above, below
    assert page.findtext(".//title") == f"aggregator: 1 of {count} sources failing"
    assert len(report_facts(everything)["sources"]) == count


def cluster_of(*nodes: NodeReport, problem: str = "") -> ClusterReport:
    return ClusterReport(3, "web1:/srv/feeds", nodes, problem)


def node(node_id: str, state: str = "alive", agrees: bool = True, flight: int = 0) -> NodeReport:
    return NodeReport(node_id, state, NOW - timedelta(seconds=4), flight, agrees)


def test_the_page_shows_the_clusters_nodes_and_who_disagrees() -> None:
    cluster = cluster_of(
        node("web1:/srv/feeds", flight=3),
        node("web2:/srv/feeds", agrees=False),
        node("web3:/srv/feeds", state="dead"),
        node("web4:/srv/feeds", state="stopped", agrees=False),
        problem="config differs from the cluster's accepted version 3",
    )
    report = replace(report_of([source("a")], [row("a")]), cluster=cluster)
    dom = lxml.html.document_fromstring(render_html(report))
    nodes = dom.xpath("//table[@id='nodes']/tbody/tr")
    assert [tr.get("data-state") for tr in nodes] == ["alive", "alive", "dead", "stopped"]
    assert nodes[0].xpath("string(td[1])") == "web1:/srv/feeds"
    assert nodes[0].xpath("string(td[@class='num in-flight'])") == "3"
    assert "4 s ago" in nodes[0].xpath("string(td[@class='last-seen'])")
    assert [tr.xpath("string(td[@class='config'])").startswith("DIFFERS") for tr in nodes] == [
        False,
        True,
        False,
        True,
    ]
    # The stopped node with an old file is no disagreement; the one up is.
    disagreement = dom.xpath("string(//p[contains(@class,'disagreement')])")
    assert "web2:/srv/feeds" in disagreement and "web4" not in disagreement
    assert "accepted version 3" in dom.xpath("string(//p[contains(@class,'this-node')])")
    assert "4 node(s), 2 alive" in dom.xpath("string(//p[contains(@class,'nodes-summary')])")
    facts = report_facts(report)["cluster"]
    assert facts["disagreeing"] == ["web2:/srv/feeds"]
    assert facts["accepted_config_version"] == 3
    assert facts["nodes"][0] == {
        "id": "web1:/srv/feeds",
        "state": "alive",
        "last_seen": iso(NOW - timedelta(seconds=4)),
        "polls_in_flight": 3,
        "config_agrees": True,
    }


def test_a_report_without_a_cluster_has_no_nodes() -> None:
    report = report_of([source("a")], [row("a")])
    assert b'id="nodes"' not in render_html(report)
    assert "cluster" not in report_facts(report)


def test_node_names_and_problems_are_escaped_on_the_page() -> None:
    cluster = ClusterReport(1, HOSTILE, (node(HOSTILE, agrees=False),), HOSTILE)
    report = replace(report_of([source("a")], [row("a")]), cluster=cluster)
    page = render_html(report).decode("utf-8")
    assert "<script" not in page.lower()
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", page)
    dom = lxml.html.document_fromstring(page)
    assert not dom.xpath("//script")
    assert "\\x1b[31m\\u202eevil" in dom.xpath("string(//table[@id='nodes']//code)")
    assert "<script>" in dom.xpath("string(//p[contains(@class,'this-node')])")
