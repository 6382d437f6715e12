"""The pure identity model: which identity an entry gets, its scope and rule, and how
an entry not found under its identity is matched with what its source already has."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from aggregator.config.sharecodes import ShareCodeRule
from aggregator.identity.dedup import (
    Action,
    SourceCopies,
    StoredEntry,
    decide,
    entry_hash,
    legacy_entry_hash,
    resolve_codes,
)
from aggregator.identity.identify import (
    CONTENT,
    GUID,
    LINK,
    TITLE_DATE,
    Identity,
    Scope,
    fingerprint,
    identify,
    is_absolute_url,
    is_global_guid,
    legacy_scoped,
)
from aggregator.identity.sharecode import share_code
from aggregator.models import Enclosure, EntryRecord, evolve

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = datetime(2022, 1, 3, 9, tzinfo=UTC)
SHARE = "http://finews.example.cn/html_News/NewsShare.html?infoCode=NW202112242224484383"
RULE = ShareCodeRule("param", "infoCode")
NONE = ShareCodeRule()


def entry(**fields: object) -> EntryRecord:
    values: dict[str, object] = {"guid": "", "title": "", "link": ""}
    values.update(fields)
    return EntryRecord(**values)  # type: ignore[arg-type]


def coded(record: EntryRecord, source_id: str, rule: ShareCodeRule = NONE) -> EntryRecord:
    """As poll.with_identities gives it to the store."""
    found = identify(record, rule, source_id)
    prints = fingerprint(record) if found.rule == GUID else ""
    return evolve(
        record, code=found.code, code_rule=found.rule, legacy_code=found.legacy, fingerprint=prints
    )


# --- which identity, which scope ---


def test_a_share_code_found_by_the_rule_is_global() -> None:
    found = identify(entry(guid="yaowen-1", link=SHARE), RULE, "a")
    assert found == Identity("NW202112242224484383", "param:infoCode", Scope.GLOBAL)
    assert identify(entry(guid="jt-8841", link=SHARE + "&from=jt"), RULE, "b") == found


def test_short_and_opaque_guids_are_scoped_to_their_source() -> None:
    for guid in ("1", "12345", "dup-1", "a8f3c9e2", "item:42"):
        mine, theirs = identify(entry(guid=guid), NONE, "a"), identify(entry(guid=guid), NONE, "b")
        assert mine == Identity(f"guid@a:{guid}", GUID, Scope.SOURCE, f"guid:{guid}")
        assert theirs.code == f"guid@b:{guid}" != mine.code
    # The rule comes first: a short guid does not matter when the link has the code.
    assert identify(entry(guid="1", link=SHARE), RULE, "a").scope is Scope.GLOBAL


def test_uri_guids_are_global() -> None:
    for guid in (
        "http://transit.example.com/2022/01/tram",
        "https://example.org/?p=123",
        "tag:example.org,2022:post-7",
        "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a",
        "TAG:example.org,2022:8",
    ):
        assert is_global_guid(guid), guid
        assert identify(entry(guid=guid), NONE, "a") == Identity(f"guid:{guid}", GUID, Scope.GLOBAL)
    for guid in ("1", "/posts/1", "http:///nohost", "mailto:x@example.org", "tag:", "urn: x"):
        assert not is_global_guid(guid), guid


def test_an_absolute_link_is_global_and_normalised_a_relative_one_is_scoped() -> None:
    found = identify(entry(link="HTTP://X.cn:80/a?utm_source=t&b=2&a=1#top"), NONE, "a")
    assert found == Identity("link:http://x.cn/a?a=1&b=2", LINK, Scope.GLOBAL)
    scoped = identify(entry(link="/posts/1"), NONE, "a")
    assert scoped == Identity("link@a:/posts/1", LINK, Scope.SOURCE, "link:/posts/1")


def test_title_and_date_identify_an_entry_within_its_source() -> None:
    found = identify(entry(title="Water cut on Monday", published=DAY), NONE, "a")
    assert (found.rule, found.scope) == (TITLE_DATE, Scope.SOURCE)
    # What the release before scopes stored it under, and an edited text stays the same.
    legacy, _ = share_code(entry(title="Water cut on Monday", published=DAY), NONE)
    assert found.legacy == legacy and found.code == "hash@a:" + legacy.removeprefix("hash:")
    edited = entry(title="Water cut on Monday", published=DAY, summary="From ten to two.")
    assert identify(edited, NONE, "a") == found
    next_week = entry(title="Water cut on Monday", published=DAY + timedelta(days=7))
    assert identify(next_week, NONE, "a").code != found.code


def test_description_only_items_are_told_apart_by_what_they_have() -> None:
    texts = ["Morning run along the river.", "Trying a new bread recipe.", "The bread worked."]
    items = [entry(summary=text) for text in texts]
    codes = [identify(item, NONE, "micro").code for item in items]
    assert len(set(codes)) == 3
    assert all(identify(item, NONE, "micro").rule == CONTENT for item in items)
    # Stable: the same item gets the same code on every poll, wherever it stands.
    assert [identify(item, NONE, "micro").code for item in reversed(items)] == codes[::-1]
    # Its title, date, content and enclosure each tell two such items apart.
    variants = [
        entry(),
        entry(title="t"),
        entry(published=DAY),
        entry(content="<p>x</p>"),
        entry(summary="<p>x</p>"),
        entry(enclosures=(Enclosure("http://cdn.example.org/ep1.mp3"),)),
        entry(enclosures=(Enclosure("http://cdn.example.org/ep2.mp3"),)),
    ]
    assert len({identify(v, NONE, "a").code for v in variants}) == len(variants)
    # All of them shared one code before scopes: the hash of an empty title and no date.
    assert {identify(v, NONE, "a").legacy for v in variants[3:]} == {share_code(entry(), NONE)[0]}


def test_old_codes_that_now_belong_to_one_source() -> None:
    assert legacy_scoped("guid:1") and legacy_scoped("guid:dup-1")
    assert legacy_scoped("hash:5ba93c9db0cff93f52b521d7420e43f6eda2784f")
    assert legacy_scoped("link:/posts/1")
    assert not legacy_scoped("guid:http://transit.example.com/2022/01/tram")
    assert not legacy_scoped("guid:tag:example.org,2022:1")
    assert not legacy_scoped("link:http://x.cn/a")
    assert not legacy_scoped("NW202112242224484383")


@given(st.text(max_size=30), st.sampled_from(["a", "b-1", "src_2"]))
def test_scoped_codes_never_equal_a_global_one(guid: str, source_id: str) -> None:
    found = identify(entry(guid=guid), NONE, source_id)
    if found.scope is Scope.SOURCE:
        assert found.code.startswith(("guid@", "hash@")) and f"@{source_id}:" in found.code
    else:
        assert found.code == "guid:" + guid.strip()


# --- fingerprints and resolving codes ---


def test_the_fingerprint_ignores_the_guid_and_dates_only() -> None:
    base = entry(guid="s1", title="Bus strike", link="http://u.example.org/a", summary="No buses.")
    same = replace(base, guid="s2", published=DAY, updated=NOW)
    assert fingerprint(same) == fingerprint(base)
    for changed in (
        replace(base, title="Bus strike over"),
        replace(base, link="http://u.example.org/b"),
        replace(base, summary="Buses again."),
        replace(base, content="<p>x</p>"),
        replace(base, enclosures=(Enclosure("http://u.example.org/a.mp3"),)),
    ):
        assert fingerprint(changed) != fingerprint(base)


def test_a_new_guid_for_the_same_article_resolves_to_the_stored_copy() -> None:
    stored = coded(entry(guid="prices-s1", title="Prices", link="http://u.example.org/p"), "u")
    again = coded(replace(stored, guid="prices-s2"), "u")
    assert again.code != stored.code
    copies = SourceCopies(fingerprints={stored.fingerprint: stored.code})
    assert [e.code for e in resolve_codes([again], set(), copies)] == [stored.code]
    # Nothing stored yet: the second of two such entries in one document is the first.
    twice = [coded(replace(stored, guid=g), "u") for g in ("x1", "x2")]
    assert {e.code for e in resolve_codes(twice, set(), SourceCopies())} == {twice[0].code}


def test_a_live_blog_keeps_every_update() -> None:
    """One URL, a guid and a title per update: different articles, not a new guid."""
    link = "http://news.example.org/live/election"
    updates = [
        coded(entry(guid=f"block-{n}", title=f"{n}:00 polls open", link=link), "live")
        for n in range(3)
    ]
    stored = {updates[0].code}
    copies = SourceCopies(fingerprints={updates[0].fingerprint: updates[0].code})
    resolved = resolve_codes(updates, stored, copies)
    assert [e.code for e in resolved] == [e.code for e in updates]
    assert len({e.code for e in resolved}) == 3


def test_old_codes_are_found_for_their_own_source() -> None:
    short = coded(entry(guid="1", title="Garlic", link="http://g.example.org/garlic"), "garden")
    assert short.legacy_code == "guid:1"
    found = resolve_codes([short], set(), SourceCopies(legacy={"guid:1": "2abc"}))
    assert [e.code for e in found] == ["guid:1"]
    assert resolve_codes([short], set(), SourceCopies())[0].code == short.code
    # Found under its own identity, the old code does not matter.
    assert resolve_codes([short], {short.code}, SourceCopies(legacy={"guid:1": "x"}))[0] is short


def test_an_old_content_code_is_only_the_copy_it_stored() -> None:
    """Three description-only items once shared one code: only the copy stored under it
    is that entry; the others become entries of their own."""
    items = [coded(entry(summary=text), "micro") for text in ("run", "bread", "success")]
    assert len({e.legacy_code for e in items}) == 1
    legacy = items[0].legacy_code
    for stored_hash in (entry_hash(items[1]), legacy_entry_hash(items[1])):
        resolved = resolve_codes(items, set(), SourceCopies(legacy={legacy: stored_hash}))
        assert [e.code for e in resolved] == [items[0].code, legacy, items[2].code]
    # Only a tombstone left of it: removed by retention, it must not come back.
    gone = resolve_codes(items, set(), SourceCopies(legacy={legacy: None}))
    assert {e.code for e in gone} == {legacy}


# --- which copy is shown ---


copies_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.one_of(st.none(), st.integers(0, 3)),  # published, days after DAY
        st.one_of(st.none(), st.integers(0, 3)),  # updated
        st.integers(0, 2),  # text version
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda c: c[0],
)


def apply(copies: list[tuple[str, EntryRecord]]) -> tuple[object, ...]:
    """The copies' first arrivals through decide, as the store applies them."""
    stored: StoredEntry | None = None
    shown: EntryRecord | None = None
    for source_id, record in copies:
        decision = decide(stored, source_id, record, entry_hash(record), NOW)
        hashes = {**(stored.source_hashes if stored else {}), source_id: entry_hash(record)}
        if decision.action in (Action.NEW, Action.SWITCH):
            assert decision.updated and decision.published
            stored = StoredEntry("c", decision.updated, hashes, decision.published, source_id)
            shown = record
        else:
            assert stored is not None and decision.action is Action.ADD_SOURCE
            stored = replace(stored, source_hashes=hashes)
    assert stored is not None
    return stored.source_id, stored.updated, stored.published, shown


@given(copies_strategy, st.randoms(use_true_random=False))
def test_the_shown_copy_does_not_depend_on_arrival_order(
    listed: list[tuple[str, int | None, int | None, int]], rng: object
) -> None:
    def day(n: int | None) -> datetime | None:
        return None if n is None else DAY + timedelta(days=n)

    copies = [
        (s, entry(guid="g", title=f"v{v}", link=SHARE, published=day(p), updated=day(u)))
        for s, p, u, v in listed
    ]
    shuffled = list(copies)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert apply(shuffled) == apply(copies)
    # The most recently updated copy is shown (one without dates counts as seen now).
    source_id, updated, _, _ = apply(copies)
    assert updated == max(
        max(r.updated or r.published or NOW, r.published or r.updated or NOW) for _, r in copies
    )
    assert source_id in {s for s, _ in copies}


@given(
    st.sampled_from(["http", "https", "ftp", "s3", "x-y.z+1", "1http", ""]),
    st.sampled_from(["://", ":/", ":", ""]),
    st.sampled_from(["", "[::1]", "[fe80::1%25x]", "user@[::1]", "a@"]),
    st.text(alphabet="ab.-_:@/?#%19 ", max_size=16),
)
def test_is_absolute_url_agrees_with_urlsplit(
    scheme: str, separator: str, start: str, rest: str
) -> None:
    """The regex stands in for urlsplit (too slow for every entry): a scheme and a host."""
    text = scheme + separator + start + rest
    try:
        parts = urlsplit(text)
        expected = bool(parts.scheme and parts.hostname)
    except ValueError:  # a bad port or IPv6 literal: no identity can rest on it
        return
    assert is_absolute_url(text) == expected, text
