"""Mapping rules and per-source filters: pure functions, config validation, and end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aggregator.config.loader import EntryFilter, Rule, Source, load_config, parse_config
from aggregator.errors import ConfigError
from aggregator.fetch.fetcher import Fetcher
from aggregator.identity.rules import classify, filter_and_classify, rejection
from aggregator.models import EntryRecord
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

TRAFFIC = Rule(add_tags=("traffic",), match_category=("交通",))
SUBWAY = Rule(add_categories=("城市",), add_tags=("地铁",), match_title="地铁|轨道", index=1)


def entry(title: str, categories: tuple[str, ...] = (), content: str = "") -> EntryRecord:
    return EntryRecord("g", title, "http://x/", content=content, categories=categories)


def source(**kwargs: Any) -> Source:
    values: dict[str, Any] = {
        "id": "s",
        "name": "S",
        "url": "http://x/",
        "category": "三秦都市报",
        "tags": ("新闻",),
        "rules": (TRAFFIC, SUBWAY),
    }
    values.update(kwargs)
    return Source(**values)


def test_rule_on_the_entrys_own_category_adds_a_tag() -> None:
    classified = classify(entry("西宝高速施工", ("交通",)), source())
    assert classified.extra_tags == ("traffic",)
    assert classified.extra_categories == ()


def test_rule_on_the_title_adds_category_and_tag_and_rules_combine() -> None:
    classified = classify(entry("西安地铁新线路开通", ("交通",)), source())
    assert classified.extra_tags == ("traffic", "地铁")
    assert classified.extra_categories == ("城市",)


def test_no_rule_matches_leaves_the_entry_alone() -> None:
    plain = entry("冬季供暖", ("民生",))
    assert classify(plain, source()) is plain


def test_rule_limited_to_other_sources_does_not_apply() -> None:
    limited = Rule(add_tags=("x",), match_title=".", sources=("other",))
    assert classify(entry("t"), source(rules=(limited,))).extra_tags == ()


def test_rule_never_repeats_the_sources_own_terms() -> None:
    again = Rule(add_tags=("新闻",), add_categories=("三秦都市报",), match_title=".")
    classified = classify(entry("t"), source(rules=(again,)))
    assert (classified.extra_tags, classified.extra_categories) == ((), ())


@pytest.mark.parametrize(
    ("filters", "title", "content", "dropped"),
    [
        (EntryFilter(exclude_title=("广告",)), "【广告】买房", "", "exclude_title '广告'"),
        (EntryFilter(exclude_title=("广告",)), "交通新闻", "", None),
        (
            EntryFilter(exclude_content=("推广",)),
            "t",
            "<p>本文为<b>推广</b></p>",
            "exclude_content",
        ),
        (EntryFilter(include_title=("交通", "地铁")), "地铁开通", "", None),
        (EntryFilter(include_title=("交通",)), "供暖", "", "matches no include"),
        (EntryFilter(include_title=("交通",), include_content=("道路",)), "供暖", "道路结冰", None),
        (EntryFilter(include_title=("交通",), exclude_title=("广告",)), "交通广告", "", "exclude"),
        (EntryFilter(), "anything", "", None),
    ],
)
def test_filters(filters: EntryFilter, title: str, content: str, dropped: str | None) -> None:
    reason = rejection(entry(title, content=content), filters)
    if dropped is None:
        assert reason is None
    else:
        assert reason is not None and dropped in reason


def test_prepare_filters_then_classifies() -> None:
    entries = [entry("地铁开通"), entry("【广告】地铁旁楼盘")]
    kept = filter_and_classify(entries, source(filters=EntryFilter(exclude_title=("广告",))))
    assert [(e.title, e.extra_tags) for e in kept] == [("地铁开通", ("地铁",))]


RULES_TOML = """
[[rules]]
match_category = "交通"
add_tags = ["traffic"]

[[rules]]
match_title = "地铁"
add_categories = ["城市"]
sources = ["jiaotong"]
"""


def base(extra: str = "") -> str:
    return (
        '[settings]\nbase_url = "http://feeds.example.org"\n\n'
        '[[sources]]\nid = "jiaotong"\nname = "交通"\nurl = "http://x.example/j.xml"\n'
        f'category = "三秦都市报"\n{extra}'
    )


def test_rules_and_filters_are_read_from_the_config(tmp_path: Path) -> None:
    text = base('exclude_title = ["广告", "^\\\\[推广\\\\]"]\ninclude_content = "交通"\n')
    config = parse_config(text + RULES_TOML, tmp_path / "sources.toml", env={})
    jiaotong = config.sources[0]
    assert jiaotong.filters == EntryFilter(
        exclude_title=("广告", r"^\[推广\]"), include_content=("交通",)
    )
    assert [r.name for r in jiaotong.rules] == ["rules[0]", "rules[1]"]
    assert config.tag_term("traffic").slug == "traffic"
    assert config.category_term("城市").slug == "chengshi"


def test_bad_rules_and_filters_are_all_reported_with_lines(tmp_path: Path) -> None:
    text = base('exclude_title = "(unclosed"\n') + (
        '\n[[rules]]\nadd_tags = ["t"]\n'  # line 11: nothing to match
        '\n[[rules]]\nmatch_title = "["\nadd_tags = ["t"]\n'  # line 15: bad regex
        '\n[[rules]]\nmatch_category = "x"\nadd_tags = ["t"]\nsources = ["nope"]\n'
        '\n[[rules]]\nmatch_category = "x"\n'  # line 23: nothing to add
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "sources.toml", env={})
    found = {(p.line, p.key, p.message.split(":")[0]) for p in caught.value.problems}
    assert found == {
        (9, "sources[0].exclude_title", "invalid regular expression '(unclosed'"),
        (11, "rules[0]", "a rule needs match_category or match_title"),
        (15, "rules[1].match_title", "invalid regular expression '['"),
        (21, "rules[2].sources", "no such source"),
        (23, "rules[3]", "a rule needs add_categories or add_tags"),
    }


def test_rules_and_filters_apply_end_to_end(
    server: FeedServer, write_config: Any, clock: Clock
) -> None:
    """A real feed through poll_source into SQLite and out as published feeds."""
    items = [
        Item("NW1", "西宝高速部分路段施工", categories=["交通"]),
        Item("NW2", "西安地铁新线路开通试运营", categories=["城市"]),
        Item("NW3", "【广告】地铁口楼盘热销", categories=["交通"]),
        Item("NW4", "冬季供暖保障", body="<p>供暖</p>"),
    ]
    url = server.set("/j.xml", rss(items))
    path = write_config(
        [
            {
                "id": "jiaotong",
                "name": "交通",
                "url": url,
                "category": "三秦都市报",
                "tags": ["新闻"],
                "share_code": {"param": "infoCode"},
                "exclude_title": "广告",
            }
        ]
    )
    path.write_text(path.read_text(encoding="utf-8") + RULES_TOML, encoding="utf-8")
    config = load_config(path)
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        outcome = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert (outcome.result, outcome.new) == ("ok", 3)
        tags = {
            r["code"]: r["tags"]
            for r in store._query(
                "SELECT code, group_concat(name, ',') AS tags FROM "
                "(SELECT * FROM entry_tags ORDER BY name) GROUP BY code"
            )
        }
        categories = {
            r["code"]: r["c"]
            for r in store._query(
                "SELECT code, group_concat(name, ',') AS c FROM "
                "(SELECT * FROM entry_categories ORDER BY name) GROUP BY code"
            )
        }
        assert tags == {"NW1": "traffic,新闻", "NW2": "新闻", "NW4": "新闻"}
        assert categories == {"NW1": "三秦都市报", "NW2": "三秦都市报,城市", "NW4": "三秦都市报"}
        assert ("tag", "traffic") in outcome.changed_feeds
        Publisher(config, store).publish()
    output = config.settings.output_dir
    assert "西宝高速" in (output / "tag" / "traffic.xml").read_text(encoding="utf-8")
    assert "地铁新线路" in (output / "category" / "chengshi.xml").read_text(encoding="utf-8")
