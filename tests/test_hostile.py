"""Every trick of the hostile server, end to end through poll_source.

Each case: a source ("victim") that already has stored entries turns
hostile; another source ("good") changes normally. We check the victim's
fetch ends within its deadline, it gets the right status and error, its
stored entries are untouched, and the good source still publishes.
"""

from __future__ import annotations

import email.utils
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import Config, load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import Limits
from aggregator.parse.feed import FieldLimits
from aggregator.parse.limits import ParseLimits
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import PollOutcome, poll_source
from aggregator.store.records import StoredArticle
from aggregator.store.sqlite import SqliteStore
from tests.atomcheck import assert_valid
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.hostile import (
    Behaviour,
    HostileServer,
    bomb,
    compressed,
    drip,
    endless,
    length_lie,
    redirect,
    respond,
    slow_headers,
)
from tests.multifetch import fetch_way  # noqa: F401  (a fixture)

# Every test here runs twice: fetch() on its own, and through fetch_many.
pytestmark = pytest.mark.usefixtures("fetch_way")

FAST = Limits(
    connect_timeout=2.0,
    read_timeout=1.0,
    deadline=1.5,
    max_body_bytes=2 << 20,
    max_decompressed_bytes=4 << 20,
)
BIG = replace(FAST, deadline=20.0, max_body_bytes=16 << 20, max_decompressed_bytes=16 << 20)

STORED = [
    Item("NW202112240300260001", "凝神聚力保畅通 忠诚守护“西大门”"),
    Item("NW202112240300260002", "宝鸡交警多措并举保障冬季道路安全畅通"),
]
GOOD_FIRST = Item("NW202112241000000003", "西宝高速部分路段施工 请绕行")
GOOD_LATER = Item("NW202112241100000004", "西安地铁新线路开通试运营")
VICTIM = "/victim.xml"

ITEM_XML = (
    "<item><title>{title}</title><link>http://finews.example.cn/a?infoCode=NW{n}</link>"
    "<guid>g{n}</guid></item>"
)


def document(head: str = "", title: str = "标题", encoding: str = "utf-8") -> bytes:
    """An RSS document with a prolog (DOCTYPE...) and one item titled `title`."""
    item = ITEM_XML.format(title=title, n="202112249999999999")
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n{head}\n<rss version="2.0"><channel>'
        f"<title>恶意</title><link>http://evil.example/</link>{item}</channel></rss>"
    ).encode(encoding)


LAUGHS = (
    '<!DOCTYPE rss [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>"
)
QUADRATIC = '<!DOCTYPE rss [\n<!ENTITY a "' + "A" * 50_000 + '">\n]>'


def many_entries(count: int, version: str = "2.0") -> bytes:
    """A big feed. RSS 2.0 is read by the lxml fast path in-process whatever its size;
    RSS 0.91 is left to feedparser, so it runs in a worker under the parse limits."""
    items = "".join(f"<item><guid>g{n}</guid><title>t{n}</title></item>" for n in range(count))
    return f'<rss version="{version}"><channel><title>big</title>{items}</channel></rss>'.encode()


@dataclass
class Scene:
    server: HostileServer
    config: Config
    store: SqliteStore
    clock: Clock

    def poll(
        self, limits: Limits = FAST, parse_limits: ParseLimits | None = None
    ) -> dict[str, tuple[PollOutcome, float]]:
        outcomes = {}
        with Fetcher(limits) as fetcher:
            for source in self.config.sources:
                started = time.monotonic()
                outcome = poll_source(
                    source, self.store, fetcher, clock=self.clock, limits=parse_limits
                )
                outcomes[source.id] = (outcome, time.monotonic() - started)
        return outcomes

    def entries(self, source_id: str) -> list[StoredArticle]:
        return self.store.articles(("source", source_id), 1000)

    def row(self, source_id: str) -> dict[str, Any]:
        return next(r for r in self.store.source_rows() if r["id"] == source_id)


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer(lifetime=120) as server:
        yield server


@pytest.fixture
def scene(hostile: HostileServer, write_config: Any, clock: Clock) -> Iterator[Scene]:
    hostile.routes[VICTIM] = respond(rss(STORED))
    hostile.routes["/good.xml"] = respond(rss([GOOD_FIRST]))
    path = write_config(
        [
            {"id": "victim", "name": "受害者", "url": hostile.url(VICTIM), "category": "测试"},
            {"id": "good", "name": "好", "url": hostile.url("/good.xml"), "category": "测试"},
        ]
    )
    config = load_config(path)
    with SqliteStore(config.settings.database) as store:
        store.sync_sources(config.sources)
        made = Scene(hostile, config, store, clock)
        first = made.poll()
        assert {o.result for o, _ in first.values()} == {"ok"}
        assert len(made.entries("victim")) == 2
        yield made


def ends_within(seconds: float, limits: Limits, parse_limits: ParseLimits | None) -> bool:
    """Within the fetch deadline plus the parse limit, with slack for a slow machine."""
    parse = parse_limits.timeout if parse_limits else 0.0
    return seconds < limits.deadline + parse + 3.0


@dataclass(frozen=True)
class Case:
    name: str
    behaviour: Callable[[HostileServer], Behaviour]
    error: str  # a fragment of the stored last_error
    status: int | None = None
    limits: Limits = FAST
    parse_limits: ParseLimits | None = None


def _redirect_loop(server: HostileServer) -> Behaviour:
    server.routes["/loop-b"] = redirect(server.url(VICTIM), 302)
    return redirect(server.url("/loop-b"), 302)


def _chain(server: HostileServer) -> Behaviour:
    for hop in range(1, 15):
        server.routes[f"/hop{hop}"] = redirect(server.url(f"/hop{hop + 1}"), 302)
    server.routes["/hop15"] = respond(rss(STORED))
    return redirect(server.url("/hop1"), 302)


def _xxe_http(server: HostileServer) -> Behaviour:
    entity = f'<!DOCTYPE rss [\n<!ENTITY x SYSTEM "{server.url("/evil-entity")}">\n]>'
    return respond(document(entity, "&x;"))


CASES = [
    Case("slow drip", lambda s: drip(rss(STORED), 0.05), "longer than its 1.5 s deadline"),
    # Header bytes are not body data: the read timeout ends an endless header.
    Case("slow headers", lambda s: slow_headers(0.05), "no body data for 1 s"),
    Case("endless body", lambda s: endless(), "byte cap"),
    Case("gzip bomb", lambda s: compressed(bomb("gzip"), "gzip"), "decompressed body is over"),
    Case("deflate bomb", lambda s: compressed(bomb("deflate"), "deflate"), "decompressed body"),
    Case("brotli bomb", lambda s: compressed(bomb("br"), "br"), "decompressed body is over"),
    Case("declared length over the cap", lambda s: length_lie(b"", 10 << 30), "byte cap"),
    Case("body shorter than its length", lambda s: length_lie(rss(STORED), 100_000), "peer"),
    # curl keeps the read timeout over a sliding 5 s window: give it room before the deadline.
    Case(
        "length longer, then silence",
        lambda s: length_lie(b"<rss", 5000, 30),
        "no body data for 1 s",
        limits=replace(FAST, deadline=12.0),
    ),
    # Held open after sending: closing with bytes unread could reset the client first.
    Case("body longer than its length", lambda s: length_lie(rss(STORED), 200, 5), "truncated"),
    Case("redirect loop", _redirect_loop, "more than 5 redirects"),
    Case("15-hop redirect chain", _chain, "more than 5 redirects"),
    Case("billion laughs", lambda s: respond(document(LAUGHS, "&lol9;")), "refers to other"),
    Case(
        "billion laughs in UTF-16",
        lambda s: respond(
            document(LAUGHS, "&lol9;", "utf-16"), content_type="application/xml; charset=utf-16"
        ),
        "refers to other",
    ),
    Case(
        "quadratic blowup",
        lambda s: respond(document(QUADRATIC, "&a;" * 2000)),
        "would expand to more than",
    ),
    Case(
        "external entity on a local file",
        lambda s: respond(
            document('<!DOCTYPE rss [\n<!ENTITY x SYSTEM "file:///etc/passwd">\n]>', "&x;")
        ),
        "external entity",
    ),
    Case("external entity over http", _xxe_http, "external entity"),
    Case(
        "parameter entity",
        lambda s: respond(
            document('<!DOCTYPE rss [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', "x")
        ),
        "parameter entity",
    ),
    Case(
        "entities behind a broken DTD",
        lambda s: respond(
            document(
                '<!DOCTYPE rss [\n<!ELEMENT rss (channel\n<!ENTITY a "' + "A" * 50_000 + '">\n]>',
                "&a;" * 2000,
            )
        ),
        "malformed",
    ),
    Case(
        "an HTML page served as a feed",
        lambda s: respond(
            b"<!DOCTYPE html><html><head><title>Not found</title></head><body>oops</body></html>",
            content_type="application/rss+xml",
        ),
        "HTML page",
    ),
    Case("empty body", lambda s: respond(b""), "empty"),
    Case("truncated document", lambda s: respond(rss(STORED)[:-40]), "truncated document"),
    Case(
        "100 000 entries, over the parse time limit",
        lambda s: respond(many_entries(100_000, "0.91")),
        "the parse took longer than 2 s",
        limits=BIG,
        parse_limits=ParseLimits(timeout=2.0),
    ),
    Case(
        "100 000 entries, over the parse memory limit",
        lambda s: respond(many_entries(100_000, "0.91")),
        "memory limit",
        limits=BIG,
        parse_limits=ParseLimits(timeout=60.0, memory=24 << 20),
    ),
    Case("404", lambda s: respond(b"gone?", status=404), "HTTP 404", status=404),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_source_fails_alone(case: Case, scene: Scene) -> None:
    stored_before = scene.entries("victim")
    scene.server.routes[VICTIM] = case.behaviour(scene.server)
    scene.server.routes["/good.xml"] = respond(rss([GOOD_LATER, GOOD_FIRST]))
    scene.clock.advance(3600)

    outcomes = scene.poll(case.limits, case.parse_limits)

    victim, seconds = outcomes["victim"]
    assert victim.result == "error", victim
    assert ends_within(seconds, case.limits, case.parse_limits), seconds
    row = scene.row("victim")
    assert case.error in row["last_error"], row["last_error"]
    assert row["error_count"] == 1
    assert row["last_http_status"] == (case.status or row["last_http_status"])
    assert row["last_error_at"] is not None
    assert scene.entries("victim") == stored_before  # nothing stored is lost
    assert "root:" not in str(scene.entries("victim"))  # /etc/passwd was never read

    good, _ = outcomes["good"]
    assert (good.result, good.new) == ("ok", 1)
    Publisher(scene.config, scene.store).publish()
    published = (scene.config.settings.output_dir / "source/good.xml").read_bytes()
    assert_valid(published)
    assert GOOD_LATER.title in published.decode()

    # The next poll is not earlier than the backoff says, and still nothing lost.
    assert victim.next_poll is not None and victim.next_poll > scene.clock.now
    assert scene.server.hits("/evil-entity") == 0


def test_external_dtd_is_never_fetched(scene: Scene) -> None:
    """An external DTD is dropped, not fetched; the feed itself is fine."""
    dtd = f'<!DOCTYPE rss SYSTEM "{scene.server.url("/evil.dtd")}">'
    scene.server.routes[VICTIM] = respond(document(dtd, "外部 DTD"))
    outcome, _ = scene.poll()["victim"]
    assert outcome.result == "ok"
    assert scene.server.hits("/evil.dtd") == 0
    assert "外部 DTD" in {a.title for a in scene.entries("victim")}


def test_a_huge_well_formed_feed_is_read_in_process_and_capped(scene: Scene) -> None:
    """No DTD: lxml reads it in-process (no entity expansion, its own size limits kept),
    and only the first max_entries entries are normalised and stored."""
    scene.server.routes[VICTIM] = respond(many_entries(100_000))
    capped = ParseLimits(fields=FieldLimits(entries=50), timeout=2.0, memory=24 << 20)
    outcome, _ = scene.poll(BIG, capped)["victim"]
    assert (outcome.result, outcome.new) == ("ok", 50), outcome
    assert {"t0", "t49"} <= {a.title for a in scene.entries("victim")}


def test_small_internal_entities_still_work(scene: Scene) -> None:
    """The screen keeps harmless entities; they are expanded in a worker process."""
    dtd = '<!DOCTYPE rss [\n<!ENTITY site "三秦网">\n<!ENTITY nbsp "&#160;">\n]>'
    scene.server.routes[VICTIM] = respond(document(dtd, "&site;&nbsp;新闻"))
    outcome, _ = scene.poll()["victim"]
    assert outcome.result == "ok", outcome
    assert "三秦网 新闻" in {a.title for a in scene.entries("victim")}


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_is_recorded_and_followed_later(
    status: int, scene: Scene, write_config: Any
) -> None:
    new = scene.server.url("/new.xml")
    scene.server.routes[VICTIM] = redirect(new, status)
    scene.server.routes["/new.xml"] = respond(rss([*STORED, GOOD_LATER]))
    scene.clock.advance(3600)
    outcome, _ = scene.poll()["victim"]
    assert (outcome.result, outcome.new) == ("ok", 1)
    assert scene.row("victim")["moved_to"] == new
    old_hits = scene.server.hits(VICTIM)

    scene.clock.advance(3600)
    scene.poll()
    assert scene.server.hits(VICTIM) == old_hits  # later polls go straight to the new URL
    assert scene.server.hits("/new.xml") == 2

    listed = CliRunner().invoke(main, ["sources", "list", "--config", str(scene.config.path)])
    assert f"moved to: {new}" in listed.output


@pytest.mark.parametrize("status", [302, 303, 307])
def test_temporary_redirect_changes_nothing(status: int, scene: Scene) -> None:
    scene.server.routes[VICTIM] = redirect(scene.server.url("/elsewhere.xml"), status)
    scene.server.routes["/elsewhere.xml"] = respond(rss(STORED))
    scene.clock.advance(3600)
    outcome, _ = scene.poll()["victim"]
    assert outcome.result in ("ok", "unchanged")
    assert scene.row("victim")["moved_to"] is None
    hits = scene.server.hits(VICTIM)
    scene.clock.advance(3600)
    scene.poll()
    assert scene.server.hits(VICTIM) == hits + 1


def test_moved_then_gone_disables_the_source(scene: Scene) -> None:
    new = scene.server.url("/new.xml")
    scene.server.routes[VICTIM] = redirect(new, 301)
    scene.server.routes["/new.xml"] = respond(rss(STORED))
    scene.clock.advance(3600)
    assert scene.poll()["victim"][0].result in ("ok", "unchanged")

    scene.server.routes["/new.xml"] = respond(b"removed", status=410, content_type="text/plain")
    scene.clock.advance(3600)
    outcome, _ = scene.poll()["victim"]
    assert outcome.result == "gone"
    row = scene.row("victim")
    assert row["disabled_reason"].startswith("410 Gone")
    assert row["last_http_status"] == 410
    assert len(scene.entries("victim")) == 2  # what it published stays

    listed = CliRunner().invoke(main, ["sources", "list", "--config", str(scene.config.path)])
    assert "victim" in listed.output
    assert "stopped: 410 Gone" in listed.output
    assert f"moved to: {new}" in listed.output


def test_redirect_straight_to_gone_disables_the_source(scene: Scene) -> None:
    scene.server.routes[VICTIM] = redirect(scene.server.url("/dead.xml"), 301)
    scene.server.routes["/dead.xml"] = respond(b"", status=410, content_type="text/plain")
    scene.clock.advance(3600)
    assert scene.poll()["victim"][0].result == "gone"
    assert scene.row("victim")["disabled_reason"].startswith("410 Gone")


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(status: int, form: str, scene: Scene) -> None:
    scene.clock.advance(3600)
    wait = 5 * 3600
    if form == "seconds":
        value = str(wait)
    else:
        value = email.utils.format_datetime(scene.clock.now + timedelta(seconds=wait), usegmt=True)
    scene.server.routes[VICTIM] = respond(
        b"slow down", status=status, content_type="text/plain", headers={"Retry-After": value}
    )
    outcome, _ = scene.poll()["victim"]
    assert outcome.result == "error"
    assert outcome.http_status == status
    assert outcome.next_poll is not None
    assert outcome.next_poll >= scene.clock.now + timedelta(seconds=wait)
    assert scene.row("victim")["last_http_status"] == status


# --- encodings and content, end to end ------------------------------------------------------

CHINESE_TITLE = "陕西宝鸡：凝神聚力保畅通 镕 忠诚守护“西大门”"


def gbk_feed(declare: str) -> bytes:
    item = Item("NW202112240300260009", CHINESE_TITLE, body="<p>正文：交警。</p>")
    return rss([item], encoding="gbk", declare=declare)


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        (
            "charset only in the HTTP header",
            b"\n".join(gbk_feed("gbk").split(b"\n")[1:]),
            "application/rss+xml; charset=GBK",
        ),
        ("GBK wrongly declared UTF-8", gbk_feed("UTF-8"), "application/rss+xml; charset=utf-8"),
        ("declared GB2312 in the XML declaration", gbk_feed("GB2312"), "text/xml"),
        ("declared GB18030", rss([Item("NW1", CHINESE_TITLE)], encoding="gb18030"), ""),
    ],
)
def test_chinese_encodings_come_out_right(
    name: str, body: bytes, content_type: str, scene: Scene
) -> None:
    scene.server.routes[VICTIM] = respond(body, content_type=content_type)
    outcome, _ = scene.poll()["victim"]
    assert outcome.result == "ok", outcome
    assert CHINESE_TITLE in {a.title for a in scene.entries("victim")}


def test_control_characters_and_script_are_removed_before_storing(scene: Scene) -> None:
    nasty = (
        '<p onclick="steal()">正文<script>alert(1)</script>'
        '<img src="x.png" onerror="alert(2)"><a href="javascript:alert(3)">j</a>'
        '<a href="data:text/html;base64,PHNjcmlwdD4=">d</a><form action="/x"><input></form></p>'
    )
    item = Item("NW202112240300260010", "标题\x01\x08带\x0b控制\x1f字符", body=nasty)
    scene.server.routes[VICTIM] = respond(rss([item]))
    outcome, _ = scene.poll()["victim"]
    assert outcome.result == "ok", outcome
    article = next(a for a in scene.entries("victim") if a.title.startswith("标题"))
    assert article.title == "标题带控制字符"
    for bad in ("script", "onclick", "onerror", "javascript:", "data:", "<form", "<input"):
        assert bad not in article.content
    assert '<img src="http://127.0.0.1' in article.content  # relative, made absolute


def test_memory_stays_bounded_through_the_bombs(scene: Scene) -> None:
    """ru_maxrss of this process after every bomb and expansion case stays small:
    the caps and the DOCTYPE screen keep the decompressed/expanded data out of memory."""
    for behaviour in (
        compressed(bomb("gzip"), "gzip"),
        compressed(bomb("br"), "br"),
        respond(document(QUADRATIC, "&a;" * 2000)),
        respond(document(LAUGHS, "&lol9;")),
    ):
        scene.server.routes[VICTIM] = behaviour
        scene.clock.advance(3600)
        assert scene.poll()["victim"][0].result == "error"
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mib < 600, peak_mib


def test_hostile_server_stops_itself(tmp_path: Path) -> None:
    server = HostileServer(lifetime=0.5)
    with server:
        server.routes["/drip"] = drip(b"x" * 1000, 0.1)
        time.sleep(1.0)
        assert server.stopping.is_set()
