"""Property tests over the decisions and the output (hypothesis)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from aggregator.config.loader import Source, load_config
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.identity.sharecode import share_code
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.parse.dates import MIN_YEAR, entry_date, parse_local, sane
from aggregator.parse.sanitize import clean_html, plain_text
from aggregator.publish.publisher import Publisher
from aggregator.store.sqlite import SqliteStore
from tests.atomcheck import problems
from tests.conftest import config_text

NOW = datetime(2026, 1, 1, tzinfo=UTC)
codes = st.from_regex(r"NW\d{6}", fullmatch=True)


@given(codes, st.text(max_size=30), st.booleans())
def test_rule_wins_over_guid_and_is_stable(code: str, guid: str, in_guid: bool) -> None:
    link = f"http://x.cn/NewsShare.html?infoCode={code}"
    record = EntryRecord(
        guid=link if in_guid else guid, title="t", link="http://x.cn/other" if in_guid else link
    )
    found = share_code(record, ShareCodeRule("param", "infoCode"))
    assert found == (code, "param:infoCode")
    assert share_code(record, ShareCodeRule("param", "infoCode")) == found


@given(st.text(max_size=40), st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York"]))
def test_date_parsing_never_raises_or_leaves_range(text: str, zone: str) -> None:
    for value in (entry_date(text, None, zone), parse_local(text, zone)):
        checked = sane(value, NOW)
        if checked is not None:
            assert checked.year >= MIN_YEAR and checked <= NOW.replace(year=NOW.year + 1)


@given(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 30))
def test_chinese_dates_in_range_or_none(year: int, month: int, day: int, hour: int) -> None:
    value = parse_local(f"{year}年{month}月{day}日 {hour}:30", "Asia/Shanghai")
    assert value is None or value.tzinfo is not None


HOSTILE_BITS = st.sampled_from(
    [
        "<script>alert(1)</script>",
        '<img src="javascript:alert(1)">',
        '<a href="data:text/html,x">',
        '<p onclick="x()">',
        "<form><input></form>",
        '<iframe src="http://x">',
        "<svg onload=x>",
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        "\x00\x07\x1b",
        "<p>",
        "</div>",
        "&amp;",
        "三秦",
    ]
)


def active_parts(html: str) -> list[str]:
    """Elements and attributes that could run code or submit data, as a browser parses them."""
    found = []
    for element in lxml.html.fragments_fromstring(f"<div>{html}</div>"):
        for node in element.iter():
            if not isinstance(node.tag, str):
                continue
            if node.tag in ("script", "form", "iframe", "object", "embed", "style", "input"):
                found.append(node.tag)
            for name, value in node.attrib.items():
                url = "".join(value.split()).lower()
                if name.startswith("on") or url.startswith(("javascript:", "data:", "vbscript:")):
                    found.append(f"{node.tag}@{name}")
    return found


@given(st.lists(st.one_of(HOSTILE_BITS, st.text(max_size=20)), max_size=12))
def test_sanitizer_output_is_stable_and_inert(parts: list[str]) -> None:
    cleaned = clean_html("".join(parts))
    if cleaned.strip():
        assert active_parts(cleaned) == []
    assert clean_html(cleaned) == cleaned  # already clean: idempotent


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80), st.text(max_size=300), st.text(max_size=20))
def test_atom_output_is_valid_for_any_unicode(title: str, content: str, author: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "config" / "sources.toml"
        path.parent.mkdir()
        path.write_text(
            config_text(
                [
                    {
                        "id": "s",
                        "name": "源",
                        "url": "http://x.cn/feed",
                        "category": "类别",
                        "tags": ["标签"],
                    }
                ],
                database=str(root / "db.sqlite"),
                output_dir=str(root / "feeds"),
                base_url="http://feeds.example.org",
            ),
            encoding="utf-8",
        )
        config = load_config(path, env={})
        source: Source = config.sources[0]
        record = EntryRecord(
            guid="g",
            title=plain_text(title),
            link="http://x.cn/a",
            author=plain_text(author),
            content=clean_html(content),
            code="c1",
            code_rule="guid",
        )
        with SqliteStore(config.settings.database) as store:
            store.ingest(source, ParsedFeed("rss20", plain_text(title), "", ""), [record], NOW)
            Publisher(config, store).publish()
        for feed in (root / "feeds").rglob("*.xml"):
            data = feed.read_bytes()
            etree.fromstring(data)
            assert problems(data) == [], feed
