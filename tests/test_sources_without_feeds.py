"""Sources without feeds: news list pages read with selectors (kind = "html") and JSON
APIs read with paths (kind = "json"), served by a real server on 127.0.0.1, polled,
stored in a real SQLite file and published, through the same identity, share-code,
rules and store path as feeds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import SOURCE_KINDS, load_config
from aggregator.config.selectors import Selectors
from aggregator.errors import ConfigError, ParseError
from aggregator.fetch.fetcher import Fetcher
from aggregator.parse.dates import page_date
from aggregator.parse.kinds import KINDS, READER_MODULES, load_readers, parse_feed
from aggregator.parse.limits import ParseLimits
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.pipeline import run_source

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
# 10:00 in Xi'an on the day of the list page: "3小时前" is 07:00 there.
NOW = datetime(2021, 12, 24, 2, 0, tzinfo=UTC)
SHARE = "https://news.example.cn/news/detail/NewsShare.html?infoCode="
SANQIN_SELECT = {
    "items": "ul.news-list > li",
    "title": "a",
    "link": "a::attr(href)",
    "date": "span.time",
    "summary": "p.intro",
    "image": "img.thumb",
}


def gbk_page() -> bytes:
    return (FIXTURES / "sanqin-list.html").read_text(encoding="utf-8").encode("gbk")


def shanghai(*numbers: int) -> datetime:
    return datetime(*numbers, tzinfo=UTC)  # type: ignore[misc]


def test_every_configurable_kind_has_a_reader() -> None:
    assert set(KINDS) == set(SOURCE_KINDS) == set(READER_MODULES)
    load_readers(SOURCE_KINDS)  # each names modules that are there


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-12-24 03:00", datetime(2021, 12, 23, 19, 0, tzinfo=UTC)),
        ("2021年12月24日", datetime(2021, 12, 23, 16, 0, tzinfo=UTC)),
        ("2021年12月24日 10:30", datetime(2021, 12, 24, 2, 30, tzinfo=UTC)),
        ("12-24 03:00", datetime(2021, 12, 23, 19, 0, tzinfo=UTC)),
        ("12-30 08:00", datetime(2020, 12, 30, 0, 0, tzinfo=UTC)),  # not yet this year
        ("12月22日", datetime(2021, 12, 21, 16, 0, tzinfo=UTC)),
        ("3小时前", datetime(2021, 12, 23, 23, 0, tzinfo=UTC)),
        ("25分钟前", datetime(2021, 12, 24, 1, 35, tzinfo=UTC)),
        ("2天前", datetime(2021, 12, 22, 2, 0, tzinfo=UTC)),
        ("昨天 18:30", datetime(2021, 12, 23, 10, 30, tzinfo=UTC)),
        ("刚刚", NOW),
        ("(2021-12-22)", datetime(2021, 12, 21, 16, 0, tzinfo=UTC)),
        ("1640286000", datetime(2021, 12, 23, 19, 0, tzinfo=UTC)),
        ("1640286000000", datetime(2021, 12, 23, 19, 0, tzinfo=UTC)),
        ("Fri, 24 Dec 2021 03:00:00 +0800", datetime(2021, 12, 23, 19, 0, tzinfo=UTC)),
        ("2021-12-24T03:00:00Z", datetime(2021, 12, 24, 3, 0, tzinfo=UTC)),
        ("发布于某天", None),
        ("", None),
    ],
)
def test_list_page_dates_in_the_source_zone_against_the_clock(
    text: str, expected: datetime | None
) -> None:
    assert page_date(text, "Asia/Shanghai", NOW) == expected


def test_a_gbk_list_page_with_relative_links_and_chinese_dates(
    server: FeedServer, write_config: Any
) -> None:
    url = server.set("/shaanxi/list.html", gbk_page(), content_type="text/html")  # no charset
    run = run_source(url, write_config, Clock(NOW), kind="html", select=SANQIN_SELECT)
    by_code = {e["code"]: e for e in run.entries}
    assert sorted(by_code) == [
        "NW202112221830445566",
        "NW202112231830112233",
        "NW202112240700778899",
        "NW202112242224484383",
    ]
    first = by_code["NW202112242224484383"]
    assert first["title"] == "宝鸡交警：雪天路滑，这些路段请绕行"
    assert first["link"] == server.url(
        "/shaanxi/detail/NewsShare.html?infoCode=NW202112242224484383"
    )
    assert first["published"].startswith("2021-12-23T19:00:00")
    assert "<b>结冰</b>" in first["content"] and "<p" in first["content"]
    assert "ad" not in first["content"]
    url, media_type, _length = json.loads(first["enclosures"])[0]
    assert url == server.url("/images/2021/1224/baoji.jpg")  # lazy-loaded: not src's
    assert media_type == "image/jpeg"
    assert by_code["NW202112231830112233"]["published"].startswith("2021-12-22T16:00:00")
    assert by_code["NW202112221830445566"]["link"] == server.url(
        "/news/detail/NewsShare.html?infoCode=NW202112221830445566&from=list"
    )
    assert by_code["NW202112221830445566"]["published"].startswith("2021-12-22T10:30:00")
    assert by_code["NW202112240700778899"]["published"].startswith("2021-12-23T23:00:00")
    titles = [e.findtext("{http://www.w3.org/2005/Atom}title") for e in run.atom_entries()]
    assert "汉中发布寒潮蓝色预警" in titles


def test_a_list_nested_in_layout_tables_with_a_base(server: FeedServer, write_config: Any) -> None:
    body = (FIXTURES / "layout-tables.html").read_bytes()
    url = server.set("/local.html", body, content_type="text/html; charset=utf-8")
    select = {
        "items": "//td[@width='780']//table[@class='list']//tr[td/a]",
        "title": "./td/a",
        "link": "./td/a/@href",
        "date": "./td[@align='right']",
    }
    run = run_source(url, write_config, Clock(NOW), kind="html", select=select, share_code=None)
    found = sorted((e["link"], e["title"], e["published"][:10]) for e in run.entries)
    assert found == [
        (
            "http://www.wnnews.example.cn/html/2021-12/22/content_99.htm",
            "蒲城县冬枣喜获丰收",
            "2021-12-21",
        ),
        (
            "http://www.wnnews.example.cn/html/2021-12/23/content_100.htm",
            "华州区新建三所幼儿园",
            "2021-12-22",
        ),
        (
            "http://www.wnnews.example.cn/html/2021-12/24/content_101.htm",
            "渭南市召开冬季安全生产会议",
            "2021-12-23",
        ),
    ]


def test_a_json_api_with_nested_objects_paging_fields_post_and_parameters(
    server: FeedServer, write_config: Any
) -> None:
    path = "/api/news/list?channel=shaanxi&page=1&size=3"
    url = server.set(
        path, (FIXTURES / "api-list.json").read_bytes(), content_type="application/json"
    )
    select = {
        "items": "data.list",
        "guid": "id",
        "title": "article.title",
        "link": "article.shareUrl",
        "summary": "article.digest",
        "image": "article.cover.url",
        "author": "author.name",
        "date": "publishTime",
    }
    run = run_source(
        url.partition("?")[0],
        write_config,
        Clock(NOW),
        kind="json",
        select=select,
        method="POST",
        params={"channel": "shaanxi", "page": 1, "size": 3},
        body='{"token":"t"}',
        headers={"X-Client": "aggregator-test"},
    )
    assert server.posted == [(path, b'{"token":"t"}')]
    sent = dict(server.requests)[path]
    assert sent["X-Client"] == "aggregator-test" and sent["Accept"].startswith("application/json")
    by_code = {e["code"]: e for e in run.entries}
    assert sorted(by_code) == [
        "NW202112221830445566",
        "NW202112231830112233",
        "NW202112242224484383",
    ]
    first = by_code["NW202112242224484383"]
    assert (first["title"], first["author"]) == (
        "宝鸡交警：雪天路滑，这些路段请绕行",
        "三秦都市报记者 王敏",
    )
    assert first["published"].startswith("2021-12-23T19:00:00")  # milliseconds since 1970
    assert first["content"] == "受降雪影响，宝鸡市区部分路段结冰。"
    assert json.loads(first["enclosures"])[0][0] == server.url("/upload/2021/1224/baoji.jpg")
    second = by_code["NW202112231830112233"]
    assert second["link"] == server.url("/news/detail/NewsShare.html?infoCode=NW202112231830112233")
    assert second["published"].startswith("2021-12-23T10:30:00")
    assert json.loads(second["enclosures"]) == []  # "cover": null
    assert by_code["NW202112221830445566"]["author"] == ""  # "author": null


def test_an_article_from_a_list_page_and_from_rss_is_one_entry(
    server: FeedServer, write_config: Any
) -> None:
    code = "NW202112242224484383"
    page = server.set("/shaanxi/list.html", gbk_page(), content_type="text/html")
    feed = server.set("/rss.xml", rss([Item(code, "宝鸡交警：雪天路滑，这些路段请绕行")]))
    common = {"category": "测试", "share_code": {"param": "infoCode"}}
    config = load_config(
        write_config(
            [
                {
                    "id": "page",
                    "name": "列表页",
                    "url": page,
                    "kind": "html",
                    "select": SANQIN_SELECT,
                    **common,
                },
                {"id": "feed", "name": "RSS", "url": feed, **common},
            ]
        ),
        env={},
    )
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        for source in config.sources:
            assert poll_source(source, store, fetcher, clock=Clock(NOW)).result == "ok"
        carriers = store.db.execute(
            "SELECT source_id FROM entry_sources WHERE code = ? ORDER BY source_id", [code]
        ).fetchall()
        assert [row[0] for row in carriers] == ["feed", "page"]
        assert store.db.execute("SELECT count(*) FROM entries").fetchone()[0] == 4


def test_a_changed_page_reads_only_its_changed_items(server: FeedServer, write_config: Any) -> None:
    text = (FIXTURES / "sanqin-list.html").read_text(encoding="utf-8")
    url = server.set("/shaanxi/list.html", text.encode("gbk"), content_type="text/html")
    source = {"kind": "html", "select": SANQIN_SELECT, "share_code": {"param": "infoCode"}}
    config = load_config(
        write_config([{"id": "s", "name": "n", "url": url, "category": "c", **source}]), env={}
    )
    clock = Clock(NOW)
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        first = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert (first.new, first.unchanged) == (4, 0)
        clock.advance(3600)  # an hour on: "3小时前" reads "4小时前", one title edited
        changed = text.replace("3小时前", "4小时前").replace("全面启动", "全面启动（更新）")
        server.set("/shaanxi/list.html", changed.encode("gbk"), content_type="text/html")
        second = poll_source(config.sources[0], store, fetcher, clock=clock)
        assert (second.new, second.updated, second.unchanged) == (0, 1, 3)
        published = store.db.execute(
            "SELECT published FROM entries WHERE code = 'NW202112240700778899'"
        ).fetchone()[0]
        assert published.startswith("2021-12-23T23:00:00")  # as first read


def test_items_matching_nothing_fail_the_poll_with_the_selector() -> None:
    with pytest.raises(ParseError, match=r"items selector 'ul.gone > li' matches nothing"):
        parse_feed(
            gbk_page(),
            kind="html",
            selectors=Selectors(items="ul.gone > li"),
            url="http://x.cn/",
            seen_at=NOW,
        )
    with pytest.raises(ParseError, match=r"items path 'data.items' finds no list"):
        parse_feed(
            (FIXTURES / "api-list.json").read_bytes(),
            kind="json",
            selectors=Selectors(items="data.items"),
            url="http://x.cn/",
            seen_at=NOW,
        )


def test_a_large_page_is_read_in_the_sandbox_alike() -> None:
    body = gbk_page()
    selectors = Selectors(**SANQIN_SELECT)
    here = parse_feed(body, kind="html", selectors=selectors, url="http://x.cn/l", seen_at=NOW)
    apart = parse_feed(
        body,
        kind="html",
        selectors=selectors,
        url="http://x.cn/l",
        seen_at=NOW,
        limits=ParseLimits(inline_max_bytes=0),
    )
    assert apart == here and len(here.entries) == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "html"}, 'a kind = "html" source needs a select table'),
        ({"select": {"items": "li"}}, 'select is for kind = "html" or kind = "json"'),
        (
            {"kind": "html", "select": {"items": "li", "title": "a[["}},
            "select.title: not a valid CSS",
        ),
        (
            {"kind": "html", "select": {"items": "//li[", "title": "a"}},
            "select.items: not a valid XPath",
        ),
        ({"kind": "json", "select": {"items": "data.[list"}}, "select.items: not a valid JMESPath"),
        ({"kind": "json", "select": {"title": "t"}}, "select needs `items`"),
        ({"kind": "rss"}, "expected one of feed, html, json"),
        ({"method": "PUT"}, "expected GET or POST"),
        ({"full_text": {"selector": "div..x"}}, "not a valid CSS selector"),
    ],
)
def test_config_check_names_the_source_and_the_selector(
    write_config: Any, fields: dict[str, Any], message: str
) -> None:
    table = {"id": "hsb", "name": "华商报", "url": "http://x.cn/list", "category": "c", **fields}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config([table]), env={})
    text = str(caught.value)
    assert message in text and "hsb" in text


def test_sources_add_and_config_check_take_the_new_kinds(
    server: FeedServer, write_config: Any
) -> None:
    url = server.set("/shaanxi/list.html", gbk_page(), content_type="text/html")
    path = write_config([])
    result = CliRunner().invoke(
        main,
        [
            "sources", "add", url, "--kind", "html", "--select", "items=ul.news-list > li",
            "--select", "date=span.time", "--select", "author=span.author",
            "--share-code-param", "infoCode", "--id", "sanqin", "--config", str(path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 entries" in result.output
    (source,) = load_config(path, env={}).sources
    assert (source.kind, source.select.items, source.select.date) == (
        "html",
        "ul.news-list > li",
        "span.time",
    )
    plain = CliRunner().invoke(main, ["config", "check", "--config", str(path)])
    assert plain.exit_code == 0, plain.output  # the syntax is right
    fetched = CliRunner().invoke(main, ["config", "check", "--fetch", "--config", str(path)])
    assert fetched.exit_code == 2
    assert "source 'sanqin': select.author: the selector 'span.author' gives no value" in (
        fetched.output
    )
    refused = CliRunner().invoke(
        main,
        [
            "sources",
            "add",
            url + "?page=2",
            "--kind",
            "html",
            "--select",
            "title=a",
            "--config",
            str(path),
        ],
    )
    assert refused.exit_code == 2 and "select needs `items`" in refused.output
