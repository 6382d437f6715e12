"""More property tests (hypothesis), beside tests/test_properties.py and test_decisions.py:
share codes for any entry text, rule precedence, URL normalisation on any text,
the next poll on success, and one bad entry never failing its whole feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.config.loader import Source
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.identity.sharecode import share_code
from aggregator.models import EntryRecord
from aggregator.run.pacing import MAX_HINT, MAX_JITTER, PollFacts, delay_after, first_poll_at
from aggregator.run.poll import extract
from aggregator.urls import normalize_url

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RULES = st.sampled_from(
    [
        ShareCodeRule("param", "infoCode"),
        ShareCodeRule("regex", r"infoCode=(NW\d+)"),
        ShareCodeRule(),
    ]
)
CODE = st.integers(0, 10**20).map(lambda n: f"NW{n:04d}")
# URL-shaped text, including what breaks urlsplit: bad ports, broken IPv6 literals.
URLISH = st.builds(
    "{}://{}{}{}/{}?{}#{}".format,
    st.sampled_from(["http", "HTTPS", "ftp", "", "javascript"]),
    st.sampled_from(["x.cn", "X.CN", "[::1]", "[::1", "[zz]", "user@h", ""]),
    st.sampled_from(["", ":80", ":443", ":8080", ":99999", ":abc", ":"]),
    st.text(max_size=5),
    st.text(max_size=15),
    st.text(max_size=15),
    st.text(max_size=5),
)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=40), URLISH))
def test_normalize_url_never_raises_and_is_idempotent(url: str) -> None:
    once = normalize_url(url)
    assert normalize_url(once) == once


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=30), URLISH), st.text(max_size=30), st.text(max_size=20), RULES)
def test_every_entry_gets_a_stable_code(
    link: str, guid: str, title: str, rule: ShareCodeRule
) -> None:
    entry = EntryRecord(guid=guid, title=title, link=link)
    code, how = share_code(entry, rule)
    assert code and how
    assert share_code(entry, rule) == (code, how)


@given(CODE, CODE, st.sampled_from(["param", "regex"]), st.text(max_size=10))
def test_the_rule_reads_the_link_first_then_the_guid_then_falls_back(
    in_link: str, in_guid: str, kind: str, noise: str
) -> None:
    rule = (
        ShareCodeRule("param", "infoCode")
        if kind == "param"
        else ShareCodeRule("regex", r"infoCode=(NW\d+)")
    )
    share = "http://x.cn/NewsShare.html?infoCode="
    both = EntryRecord(guid=share + in_guid, title=noise, link=share + in_link)
    assert share_code(both, rule)[0] == in_link
    guid_only = EntryRecord(guid=share + in_guid, title=noise, link="http://x.cn/a")
    assert share_code(guid_only, rule)[0] == in_guid
    neither = EntryRecord(guid="g-" + noise, title=noise, link="http://x.cn/a")
    assert share_code(neither, rule) == ("guid:" + ("g-" + noise).strip(), "guid")


@given(
    st.floats(min_value=1, max_value=10**6),
    st.one_of(st.none(), st.floats(min_value=0, max_value=10**8)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
    st.floats(min_value=0, max_value=0.999),
)
def test_after_success_never_before_the_interval_and_never_beyond_the_caps(
    interval: float, max_age: float | None, ttl: int | None, rand: float
) -> None:
    delay = delay_after(PollFacts(interval, True, max_age=max_age, ttl_minutes=ttl), rand)
    assert delay >= interval
    assert delay <= max(interval, MAX_HINT) + MAX_JITTER


@given(
    st.one_of(st.none(), st.integers(-(10**6), 10**6)),
    st.floats(min_value=1, max_value=10**6),
    st.floats(min_value=0, max_value=0.999),
    st.integers(0, 10**4),
)
def test_first_poll_is_never_in_the_past_and_keeps_a_decided_future(
    offset: int | None, interval: float, rand: float, due: int
) -> None:
    stored = None if offset is None else NOW + timedelta(seconds=offset)
    when = first_poll_at(NOW, stored, interval, rand, due)
    assert when >= NOW
    if stored is not None and stored > NOW:
        assert when == stored
    else:
        assert when <= NOW + timedelta(seconds=min(60.0, interval / 10) + 1)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.text(max_size=20), URLISH), st.text(max_size=10)),
        min_size=1,
        max_size=5,
    )
)
def test_no_entry_link_makes_a_feed_unreadable(items: list[tuple[str, str]]) -> None:
    """A link with a bad port once made the share code raise, failing the whole poll."""
    body = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link></item>"
        for link, title in items
    )
    document = f'<rss version="2.0"><channel><title>t</title>{body}</channel></rss>'
    source = Source(
        "s", "s", "http://x.cn/feed", "c", share_code=ShareCodeRule("param", "infoCode")
    )
    feed = extract(source, document.encode(), "http://x.cn/feed", "application/rss+xml", NOW)
    assert all(entry.code for entry in feed.entries)
