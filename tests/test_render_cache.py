"""The render cache's pure parts: a fragment without the article's HTML
(aggregator.publish.shells) and every format of an entry in one compressed blob
(aggregator.publish.renderpack)."""

from __future__ import annotations

import pytest

from aggregator.publish import shells
from aggregator.publish.assembled import AssembledFragments
from aggregator.publish.formats import REGISTERED
from aggregator.publish.renderpack import Render, pack, unpack

# Text that does not repeat itself (zlib would shrink a repeated phrase on its own).
TEXT = "".join(chr(0x4E00 + i * 7919 % 20000) for i in range(400))
ARTICLE = f"<p>三秦都市报讯 {TEXT}，R&amp;D <b>加粗</b></p>"


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_a_cut_fragment_is_filled_back_to_the_same_bytes(name: str) -> None:
    write = REGISTERED[name].write_content
    fragment = b"<entry><title>t</title><content>" + write(ARTICLE) + b"</content></entry>"
    body = shells.cut(fragment, write(ARTICLE))
    assert body[:1] == shells.SHELL and len(body) < 60
    assert shells.fill(body, lambda: write(ARTICLE)) == fragment


def test_a_fragment_is_kept_whole_where_cutting_could_go_wrong() -> None:
    write = REGISTERED["atom"].write_content
    written = write(ARTICLE)
    twice = b"<a>" + written + b"</a><b>" + written + b"</b>"
    cases = {
        "not the stored content": (b"<c>" + written + b"</c>", b""),
        "too short to matter": (b"<c>short</c>", b"short"),
        "written twice": (twice, written),
        "not in it": (b"<c>other</c>", written),
    }
    for why, (fragment, shown) in cases.items():
        body = shells.cut(fragment, shown)
        assert body == shells.WHOLE + fragment, why
        assert shells.fill(body, lambda: write("anything")) == fragment, why


def test_every_format_of_an_entry_packs_into_one_blob_and_back() -> None:
    renders = {
        "atom": Render("a1", "2021-12-24T06:24:48.123456+00:00", b"<entry>\x00</entry>"),
        "json": Render("j1", "2021-12-24T06:24:48.123456+00:00", b'{"content_html":"\x00"}'),
        "rss": Render("r1", "2021-12-24T06:24:48.123456+00:00", b""),
    }
    blob = pack(renders, ARTICLE)
    assert unpack(blob, ARTICLE) == renders
    assert unpack(pack({}, ARTICLE), ARTICLE) == {}


def test_a_blob_that_does_not_unpack_is_a_miss() -> None:
    blob = pack({"atom": Render("a", "s", b"<entry/>")}, ARTICLE)
    assert unpack(blob, ARTICLE + "改") == {}  # packed against another content
    assert unpack(blob[:-3], ARTICLE) == {}
    assert unpack(b"not zlib", ARTICLE) == {}


def test_quotes_of_the_content_cost_little() -> None:
    """The RSS description quotes the article's first words: against the content as
    the dictionary they are nearly free."""
    render = {"rss": Render("r", "s", f"<description>{TEXT[:300]}</description>".encode())}
    with_it = len(pack(render, ARTICLE))
    without = len(pack(render, ""))
    assert with_it < without / 3


def test_an_assembled_fragment_is_used_only_for_the_row_and_times_it_came_from() -> None:
    kept = AssembledFragments()
    want = ("context", "2021-12-24T06:24:48.1+00:00")
    kept.put("NW1", "atom", b"row", want, b"<entry/>")
    assert kept.get("NW1", "atom", b"row", want) == b"<entry/>"
    assert kept.get("NW1", "rss", b"row", want) is None
    assert kept.get("NW1", "atom", b"another row", want) is None  # the entry changed
    assert kept.get("NW1", "atom", None, want) is None  # its row was dropped
    assert kept.get("NW1", "atom", b"row", ("other context", want[1])) is None


def test_assembled_fragments_are_bounded_least_recently_used_out_first() -> None:
    kept = AssembledFragments(limit=3 * (1000 + 200))
    want = ("c", "s")
    for code in ("a", "b", "c"):
        kept.put(code, "atom", b"row", want, b"x" * 1000)
    assert kept.get("a", "atom", b"row", want)  # a is used again: b is the oldest now
    kept.put("d", "atom", b"row", want, b"x" * 1000)
    assert kept.get("b", "atom", b"row", want) is None
    assert all(kept.get(code, "atom", b"row", want) for code in ("a", "c", "d"))
