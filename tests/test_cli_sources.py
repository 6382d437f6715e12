"""The sources commands, config check and env overrides, run like a user runs them."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import load_config, parse_config
from aggregator.errors import ConfigError
from tests.feeds import Item, rss, rss_entries
from tests.feedserver import FeedServer

COMMENTED = Path(__file__).parent / "fixtures" / "commented.toml"
ITEMS = [
    Item(
        "NW202112242224484383", "凝神聚力保畅通 忠诚守护“西大门”", guid="a-1", categories=["交通"]
    ),
    Item("NW202112240805120001", "西安地铁新线路开通试运营", guid="a-2"),
    Item("NW202112240900000003", "【广告】楼盘热销", guid="a-3"),
]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def empty_config(write_config: Any) -> Path:
    path: Path = write_config([])
    path.write_text("# my sources\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


# --- sources add --------------------------------------------------------------------------


def test_add_checks_the_feed_and_proposes_name_and_id(
    server: FeedServer, write_config: Any
) -> None:
    url = server.set("/feed.xml", rss(ITEMS, title="三秦都市报"))
    path = empty_config(write_config)
    before = path.read_text(encoding="utf-8")
    code, output = run(
        "sources", "add", url, "--config", str(path), "--tag", "新闻",
        "--share-code-param", "infoCode", "--interval", "10m",
    )  # fmt: skip
    assert code == 0, output
    assert "share-code rule param:infoCode found a code in 3 of 3 entries" in output
    assert "added source 'sanqin-dushibao'" in output
    assert path.read_text(encoding="utf-8") == before + (
        "\n[[sources]]\n"
        'id = "sanqin-dushibao"\n'
        'name = "三秦都市报"\n'
        f'url = "{url}"\n'
        'category = "三秦都市报"\n'
        'tags = ["新闻"]\n'
        'interval = "10m"\n'
        'share_code = { param = "infoCode" }\n'
    )
    assert load_config(path).sources[0].interval == 600


def test_add_follows_html_autodiscovery(server: FeedServer, write_config: Any) -> None:
    server.set("/rss/news.xml", rss(ITEMS, title="要闻"))
    page = server.set(
        "/news/",
        b"<!DOCTYPE html><html><head><title>site</title>"
        b'<link rel="stylesheet" href="/s.css">'
        b'<link rel="alternate" type="application/rss+xml" title="RSS" href="../rss/news.xml">'
        b"</head><body>hello</body></html>",
        content_type="text/html; charset=utf-8",
    )
    path = empty_config(write_config)
    code, output = run("sources", "add", page, "--config", str(path), "--id", "yaowen", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["discovered_from"] == page
    assert report["source"] == {
        "id": "yaowen",
        "name": "要闻",
        "url": server.url("/rss/news.xml"),
        "category": "要闻",
    }
    assert load_config(path).sources[0].url == server.url("/rss/news.xml")


def test_add_refuses_a_page_without_a_feed(server: FeedServer, write_config: Any) -> None:
    page = server.set("/plain", b"<html><body>no feed</body></html>", content_type="text/html")
    path = empty_config(write_config)
    before = path.read_bytes()
    code, output = run("sources", "add", page, "--config", str(path))
    assert code == 1
    assert "announces no feed" in output
    assert path.read_bytes() == before


def test_add_refuses_duplicates_before_fetching(server: FeedServer, write_config: Any) -> None:
    url = server.set("/feed.xml", rss(ITEMS))
    path = write_config([{"id": "a", "name": "A", "url": url, "category": "c"}])
    code, output = run("sources", "add", url + "/", "--config", str(path))
    assert code == 2
    assert f"{url}/ is already configured, as source 'a'" in output
    assert server.hits("/feed.xml") == 0
    other = server.set("/other.xml", rss(ITEMS))
    code, output = run("sources", "add", other, "--id", "a", "--config", str(path))
    assert code == 2
    assert "a source with id 'a' already exists" in output


def test_add_dry_run_writes_nothing(server: FeedServer, write_config: Any) -> None:
    url = server.set("/feed.xml", rss(ITEMS, title="Xi'an Evening"))
    path = empty_config(write_config)
    before = path.read_bytes()
    code, output = run("sources", "add", url, "--dry-run", "--config", str(path))
    assert code == 0, output
    assert 'id = "xi-an-evening"' in output
    assert path.read_bytes() == before


# --- edit, disable, enable, remove through the CLI ----------------------------------------------


def test_cli_edits_keep_the_file_byte_identical_outside_the_change(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    shutil.copy(COMMENTED, path)
    original = path.read_text(encoding="utf-8")
    config = ["--config", str(path)]
    assert run("sources", "disable", "yaowen", "jiaotong", *config)[0] == 0
    assert run("sources", "edit", "yaowen", "interval=10m", "exclude_title=广告", *config)[0] == 0
    edited = path.read_text(encoding="utf-8")
    assert tomllib.loads(edited)["sources"][0]["exclude_title"] == "广告"
    assert load_config(path).sources[0].filters.exclude_title == ("广告",)
    code, _ = run("sources", "edit", "yaowen", "interval=5m", "--unset", "exclude_title",
                  "--unset", "enabled", *config)  # fmt: skip
    assert code == 0
    assert run("sources", "edit", "jiaotong", "--unset", "enabled", *config)[0] == 0
    assert path.read_text(encoding="utf-8") == original
    assert run("sources", "remove", "jiaotong", *config)[0] == 0
    removed = path.read_text(encoding="utf-8")
    start = original.index('[[sources]]\nid = "jiaotong"')
    assert removed == original[:start] + original[original.index("[[rules]]") :]


def test_edit_refusals_leave_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    shutil.copy(COMMENTED, path)
    before = path.read_bytes()
    config = ["--config", str(path)]
    code, output = run("sources", "edit", "yaowen", "colour=red", *config)
    assert (code, "unknown key colour") == (2, output.split("(")[0].removeprefix("error: ").strip())
    code, output = run("sources", "edit", "yaowen", "--interval", "-5", *config)
    assert code == 2 and "interval" in output and "a duration must be positive" in output
    code, output = run("sources", "edit", "nope", "--name", "x", *config)
    assert code == 2 and "no source with id 'nope'" in output
    code, output = run("sources", "edit", "xawb", "--url", "http://finews.example.cn/yaowen.xml",
                       *config)  # fmt: skip
    assert code == 2 and "already configured, as source 'yaowen'" in output
    code, output = run("sources", "remove", "nope", *config)
    assert code == 2
    assert path.read_bytes() == before


# --- check and list ---------------------------------------------------------------------


def checked_config(server: FeedServer, write_config: Any) -> Path:
    url = server.set("/feed.xml", rss(ITEMS))
    path: Path = write_config(
        [
            {
                "id": "sanqin",
                "name": "三秦都市报",
                "url": url,
                "category": "三秦都市报",
                "tags": ["新闻"],
                "share_code": {"param": "infoCode"},
                "exclude_title": "广告",
            },
            {"id": "broken", "name": "B", "url": server.url("/missing.xml"), "category": "c"},
        ]
    )
    rules = '\n[[rules]]\nmatch_category = "交通"\nadd_tags = ["traffic"]\n'
    path.write_text(path.read_text(encoding="utf-8") + rules, encoding="utf-8")
    return path


def test_check_shows_share_code_and_rule_without_storing(
    server: FeedServer, write_config: Any
) -> None:
    path = checked_config(server, write_config)
    code, output = run("sources", "check", "sanqin", "--config", str(path))
    assert code == 0, output
    assert "share-code rule param:infoCode: 3 of 3 entries" in output
    assert "identity: NW202112242224484383  (global, rule: param:infoCode)" in output
    assert "identities: 3 global (merge with any source's), 0 source-scoped" in output
    assert "tags: 新闻, traffic" in output
    assert "mapping rules: rules[0]" in output
    assert "dropped: exclude_title '广告' matches the title" in output
    assert not load_config(path).settings.database.exists()  # nothing stored


def test_check_json_and_trying_another_rule(server: FeedServer, write_config: Any) -> None:
    path = checked_config(server, write_config)
    code, output = run(
        "sources", "check", "sanqin", "--json", "--limit", "1",
        "--share-code-regex", r"infoCode=NW(\d{8})", "--config", str(path),
    )  # fmt: skip
    assert code == 0, output
    [report] = json.loads(output)
    assert report["share_code_rules"] == {"regex": 3}
    assert report["first"] == [
        {
            "title": "凝神聚力保畅通 忠诚守护“西大门”",
            "shown_title": "凝神聚力保畅通 忠诚守护“西大门”",
            "link": ITEMS[0].link,
            "guid": "a-1",
            "published": "2021-12-23T19:00:26+00:00",
            "published_raw": "Fri, 24 Dec 2021 03:00:26 +0800",
            "author": "",
            "text": "正文。",
            "images": [],
            "identity": "20211224",
            "scope": "global",
            "rule": "regex",
            "share_code": "20211224",
            "share_code_rule": "regex",
            "feed_categories": ["交通"],
            "categories": ["三秦都市报"],
            "tags": ["新闻", "traffic"],
            "mapping_rules": ["rules[0]"],
            "kept": True,
            "dropped_because": None,
            "same_as_entry": None,
            "stored_from": [],
        }
    ]


def test_check_every_source_fails_when_one_fails(server: FeedServer, write_config: Any) -> None:
    path = checked_config(server, write_config)
    code, output = run("sources", "check", "--config", str(path))
    assert code == 1
    assert "error: HTTP 404" in output
    assert "3 of 3 entries" in output


def test_list_shows_config_and_state_side_by_side(server: FeedServer, write_config: Any) -> None:
    path = checked_config(server, write_config)
    assert run("poll", "--all", "--no-publish", "--config", str(path))[0] == 1
    code, output = run("sources", "list", "--config", str(path))
    assert code == 0
    header, first, second = output.splitlines()[:3]
    assert header.split() == ["ID", "STATE", "NAME", "CATEGORY", "EVERY", "SHARE", "CODE",
                              "LAST", "POLL", "RESULT", "NEXT", "POLL", "ENTRIES"]  # fmt: skip
    assert first.split()[:2] == ["sanqin", "enabled"] and first.split()[-1] == "2"
    assert second.split()[:2] == ["broken", "failing"]
    assert "broken: 1 errors in a row, last: HTTP 404" in output
    code, output = run("sources", "list", "--json", "--config", str(path))
    rows = {row["id"]: row for row in json.loads(output)}
    assert rows["sanqin"]["entries"] == 2 and rows["sanqin"]["last_result"] == "ok"
    assert rows["broken"]["last_http_status"] == 404


# --- config check and environment overrides -------------------------------------------------------


def test_config_check_lists_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    path.write_text(
        "[settings]\n"
        "port = 70000\n"  # 2
        'default_interval = "often"\n'  # 3
        "\n"
        "[[sources]]\n"  # 5: no category
        'id = "Bad ID"\n'  # 6
        'name = "x"\n'
        'url = "ftp://x.example/feed"\n'  # 8
        "\n"
        "[[sources]]\n"
        'id = "ok"\n'
        'name = "ok"\n'
        'url = "http://x.example/f"\n'
        'category = "c"\n'
        'colour = "red"\n'  # 15
        'include_title = "("\n'  # 16
        "\n"
        "[[rules]]\n"  # 18
        'match_title = "x"\n',
        encoding="utf-8",
    )
    code, output = run("config", "check", "--config", str(path))
    assert code == 2
    lines = output.splitlines()
    assert lines[-1] == "8 problem(s) found"
    located = [line.split(": ")[0].rsplit(":", 1)[-1] for line in lines[:-1]]
    assert sorted(map(int, located)) == [2, 3, 5, 6, 8, 15, 16, 18]
    assert any("sources[1].colour (source 'ok'): unknown key" in line for line in lines)


def test_config_check_ok(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    shutil.copy(COMMENTED, path)
    assert run("config", "check", "--config", str(path)) == (0, f"{path}: ok, 3 sources\n")


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("AGGREGATOR_DATABASE", "/srv/agg/prod.db", "database", Path("/srv/agg/prod.db")),
        ("AGGREGATOR_OUTPUT_DIR", "/srv/www/feeds", "output_dir", Path("/srv/www/feeds")),
        ("AGGREGATOR_BASE_URL", "https://news.example.org/feeds/", "base_url",
         "https://news.example.org/feeds"),
        ("AGGREGATOR_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("AGGREGATOR_PORT", "9090", "port", 9090),
    ],
)  # fmt: skip
def test_environment_overrides(variable: str, value: str, attribute: str, expected: Any) -> None:
    text = COMMENTED.read_text(encoding="utf-8")
    default = parse_config(text, COMMENTED, env={}).settings
    settings = parse_config(text, COMMENTED, env={variable: value}).settings
    assert getattr(settings, attribute) == expected != getattr(default, attribute)


def test_bad_environment_value_is_reported_as_such() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(COMMENTED.read_text(encoding="utf-8"), COMMENTED,
                     env={"AGGREGATOR_PORT": "eighty"})  # fmt: skip
    [problem] = caught.value.problems
    assert problem.key == "settings.port"
    assert "(from the environment: AGGREGATOR_PORT)" in problem.message


def test_the_cli_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    shutil.copy(COMMENTED, path)
    monkeypatch.setenv("AGGREGATOR_DATABASE", str(tmp_path / "elsewhere.db"))
    code, output = run("sources", "list", "--json", "--config", str(path))
    assert code == 0, output
    assert (tmp_path / "elsewhere.db").exists()


def test_check_suggests_a_share_code_rule(server: FeedServer, write_config: Any) -> None:
    url = server.set("/feed.xml", rss(ITEMS))
    path = write_config([{"id": "plain", "name": "P", "url": url, "category": "c"}])
    code, output = run("sources", "check", "--config", str(path))
    assert code == 0, output
    assert "no share-code rule: codes come from guid, link or content (guid: 3)" in output
    assert "the links suggest --share-code-param infoCode" in output


def test_check_shows_each_identity_its_scope_and_what_it_would_meet(
    server: FeedServer, write_config: Any
) -> None:
    """An operator sees a collision before it happens: which identities are only the
    source's own, which would merge with an entry already stored from another source,
    and which entries of the feed would be stored as one."""
    tram = "http://transit.example.com/2022/01/tram"
    plain = [
        {"guid": "1", "title": "Numbered", "link": "http://garden.example.org/1"},
        {"guid": tram, "permalink": "1", "title": "Tram", "link": tram},
        {"body": "<p>Only a description.</p>"},
        {"guid": "1", "title": "Numbered again", "link": "http://garden.example.org/1b"},
    ]
    sources = [
        {"id": "garden", "name": "G", "url": server.set("/g.xml", rss_entries(plain))},
        {"id": "transit", "name": "T", "url": server.set("/t.xml", rss_entries(plain[1:2]))},
    ]
    path = write_config([s | {"category": "c"} for s in sources])
    assert run("poll", "transit", "--config", str(path))[0] == 0
    code, output = run("sources", "check", "garden", "--config", str(path))
    assert code == 0, output
    assert "identities: 1 global (merge with any source's), 3 source-scoped" in output
    assert "identity: guid@garden:1  (source-scoped, rule: guid)" in output
    assert f"identity: guid:{tram}  (global, rule: guid)" in output
    assert "already stored from transit: one entry with their copies" in output
    assert "(no title; shown as: Only a description.)" in output
    assert "  (source-scoped, rule: content)" in output
    assert "the same identity as entry 1: stored as one entry" in output
    _, as_json = run("sources", "check", "garden", "--json", "--config", str(path))
    [report] = json.loads(as_json)
    assert [
        (e["scope"], e["rule"], e["same_as_entry"], e["stored_from"]) for e in report["first"]
    ] == [
        ("source", "guid", None, []),
        ("global", "guid", None, ["transit"]),
        ("source", "content", None, []),
        ("source", "guid", 1, []),
    ]


def test_required_keys_cannot_be_unset(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    shutil.copy(COMMENTED, path)
    code, output = run("sources", "edit", "yaowen", "--unset", "category", "--config", str(path))
    assert code == 2 and "cannot be removed" in output
