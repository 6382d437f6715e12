"""The pure decisions: share codes, URL normalisation, dedup, next poll, slugs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aggregator.config.sharecodes import ShareCodeRule
from aggregator.config.slugs import assign_slugs, slugify
from aggregator.identity.dedup import Action, StoredEntry, decide, entry_hash, first_per_code
from aggregator.identity.sharecode import share_code
from aggregator.models import EntryRecord
from aggregator.run.pacing import (
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    PollFacts,
    delay_after,
    first_poll_at,
)
from aggregator.urls import normalize_url

SHARE = "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202112242224484383"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def entry(**fields: object) -> EntryRecord:
    values: dict[str, object] = {"guid": "g1", "title": "标题", "link": SHARE}
    values.update(fields)
    return EntryRecord(**values)  # type: ignore[arg-type]


# --- share codes ---


def test_param_rule_finds_the_code_in_the_link() -> None:
    assert share_code(entry(), ShareCodeRule("param", "infoCode")) == (
        "NW202112242224484383",
        "param:infoCode",
    )


def test_param_rule_falls_back_to_the_guid_then_is_case_insensitive() -> None:
    rule = ShareCodeRule("param", "infoCode")
    assert share_code(entry(link="http://x.cn/a", guid=SHARE), rule)[0] == "NW202112242224484383"
    assert (
        share_code(entry(link=SHARE.replace("infoCode", "infocode")), rule)[0]
        == "NW202112242224484383"
    )


def test_regex_rule() -> None:
    rule = ShareCodeRule("regex", r"infoCode=(NW\d+)")
    assert share_code(entry(), rule) == ("NW202112242224484383", "regex")


def test_fallbacks_guid_then_link_then_hash() -> None:
    rule = ShareCodeRule("param", "infoCode")
    assert share_code(entry(link="http://x.cn/a"), rule) == ("guid:g1", "guid")
    by_link = share_code(entry(link="HTTP://X.cn:80/a?utm_source=t&b=2&a=1#top", guid=""), rule)
    assert by_link == ("link:http://x.cn/a?a=1&b=2", "link")
    hashed = share_code(entry(link="", guid=""), rule)
    assert hashed[1] == "hash" and hashed[0].startswith("hash:")
    assert hashed == share_code(entry(link="", guid=""), rule)


def test_same_article_under_two_guids_gets_one_code() -> None:
    rule = ShareCodeRule("param", "infoCode")
    a = entry(guid="yaowen-1")
    b = entry(guid="tag:x,2021:8841", link=SHARE + "&from=jiaotong")
    assert share_code(a, rule)[0] == share_code(b, rule)[0]


@given(st.text(max_size=60), st.text(max_size=20))
def test_normalize_url_is_idempotent(path: str, query: str) -> None:
    url = f"https://Example.COM:443/{path}?{query}"
    once = normalize_url(url)
    assert normalize_url(once) == once


# --- dedup ---


def test_decide_new_add_source_unchanged_update() -> None:
    record = entry(updated=NOW - timedelta(days=1))
    hashed = entry_hash(record)
    assert decide(None, "a", record, hashed, NOW).action is Action.NEW
    stored = StoredEntry("c", NOW - timedelta(days=1), {"a": hashed}, source_id="a")
    assert decide(stored, "b", record, hashed, NOW).action is Action.ADD_SOURCE
    assert decide(stored, "a", record, hashed, NOW).action is Action.UNCHANGED
    edited = entry(title="新标题", updated=NOW - timedelta(days=1))
    decision = decide(stored, "a", edited, entry_hash(edited), NOW)
    assert decision.action is Action.UPDATE and decision.updated == NOW
    newer = entry(title="新标题", updated=NOW - timedelta(hours=1))
    assert decide(stored, "a", newer, entry_hash(newer), NOW).updated == NOW - timedelta(hours=1)


def test_a_second_source_with_a_different_copy_does_not_flip_flop() -> None:
    stored = StoredEntry("c", NOW, {"a": "hash-a", "b": "hash-b"}, source_id="a")
    assert decide(stored, "b", entry(), "hash-b", NOW).action is Action.UNCHANGED
    # A copy that is not shown changing is remembered, and shows nothing new.
    assert decide(stored, "b", entry(), "hash-b2", NOW).action is Action.OTHER_COPY


def test_one_feed_listing_an_article_twice_counts_it_once() -> None:
    first = entry(code="c1", guid="g1")
    unique = first_per_code([first, entry(code="c1", guid="g2"), entry(code="c2")])
    assert [e.guid for e in unique] == ["g1", "g1"] and unique[0] is first


# --- next poll ---


def test_success_waits_the_interval_plus_small_jitter() -> None:
    facts = PollFacts(1800, succeeded=True)
    assert delay_after(facts, 0.0) == 1800
    assert 1800 < delay_after(facts, 0.99) <= 1800 + 180


def test_cache_hints_are_lower_bounds_clamped() -> None:
    assert delay_after(PollFacts(600, True, max_age=3600), 0) == 3600
    assert delay_after(PollFacts(600, True, max_age=60), 0) == 600
    assert delay_after(PollFacts(600, True, max_age=10**9), 0) == 24 * 3600
    assert delay_after(PollFacts(600, True, ttl_minutes=120), 0) == 7200


@given(
    st.floats(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=200),
    st.one_of(st.none(), st.floats(min_value=0, max_value=10**6)),
    st.floats(min_value=0, max_value=0.999),
)
def test_backoff_never_before_retry_after_and_never_beyond_caps(
    interval: float, errors: int, retry_after: float | None, rand: float
) -> None:
    delay = delay_after(PollFacts(interval, False, errors, retry_after), rand)
    assert delay > 0
    if retry_after is not None:  # honoured, up to a week (a typo must not park a source)
        assert delay >= min(retry_after, MAX_RETRY_AFTER)
    assert delay <= max(MAX_BACKOFF, min(retry_after or 0, MAX_RETRY_AFTER))


def test_backoff_grows_then_resets_on_success() -> None:
    delays = [delay_after(PollFacts(60, False, n), 0.999) for n in range(1, 6)]
    assert delays == sorted(delays) and delays[-1] > delays[0] * 10
    assert delay_after(PollFacts(60, True), 0) == 60


def test_restart_keeps_future_times_and_spreads_due_sources() -> None:
    later = NOW + timedelta(hours=3)
    assert first_poll_at(NOW, later, 1800, 0.5) == later
    times = {first_poll_at(NOW, None, 1800, r / 10, due_count=100) for r in range(10)}
    assert len(times) == 10 and max(times) - min(times) > timedelta(seconds=30)
    assert first_poll_at(NOW, None, 1800, 0.99, due_count=2) <= NOW + timedelta(seconds=1)


# --- slugs ---


def test_chinese_names_get_readable_pinyin_slugs() -> None:
    assert slugify("三秦都市报新闻") == "sanqin-dushibao-xinwen"
    assert slugify("Hello, World") == "hello-world"
    assert slugify("!!!").startswith("x-")


def test_slug_collisions_resolve_deterministically() -> None:
    names = ["Hello World", "hello-world", "其他"]
    first = assign_slugs(names)
    assert first == assign_slugs(list(reversed(names)))
    assert len(set(first.values())) == 3
    assert assign_slugs(names, {"Hello World": "hw"})["Hello World"] == "hw"
