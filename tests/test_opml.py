"""OPML import of the shapes real feed readers export, and export -> import round trips."""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.cli import main
from aggregator.config import Source, load_config
from aggregator.opml import OpmlError, parse_opml

OPML = Path(__file__).parent / "fixtures" / "opml"
COMMENTED = Path(__file__).parent / "fixtures" / "commented.toml"
SAMPLE = Path(__file__).parents[1] / "config" / "sources.toml"


def feeds(name: str) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    parsed = parse_opml((OPML / name).read_bytes())
    return [(f.name, f.url, f.category, f.tags) for f in parsed.feeds]


def test_feedly_export() -> None:
    assert feeds("feedly.opml") == [
        ("三秦都市报 · 要闻", "https://finews.example.cn/rss/yaowen.xml", "陕西新闻", ()),
        ("西安晚报", "https://www.example.org/feeds/xawb.atom", "陕西新闻", ()),
        ("Example Engineering Blog", "https://blog.example.com/feed/", "Tech", ()),
    ]


def test_inoreader_export_with_a_feed_outside_any_folder() -> None:
    assert feeds("inoreader.xml") == [
        ("三秦都市报 · 交通", "https://finews.example.cn/rss/jiaotong.xml", "交通", ()),
        ("Loose feed & co", "https://loose.example.net/index.xml?lang=zh&format=rss", None, ()),
    ]


def test_miniflux_export_without_type_attributes() -> None:
    assert feeds("miniflux.opml") == [
        ("Example Engineering Blog", "https://blog.example.com/feed/", "All", ()),
        ("华商报", "https://hsb.example.cn/feed.xml", "新闻", ()),
    ]


def test_freshrss_export_skips_scraped_pages() -> None:
    parsed = parse_opml((OPML / "freshrss.opml.xml").read_bytes())
    assert [(f.name, f.category) for f in parsed.feeds] == [
        ("陕西日报", "Uncategorized"),
        ("Hacker News", "Scraped"),
    ]
    assert parsed.skipped == [
        ("A site without a feed", "type 'html+xpath' scrapes a web page; not a feed")
    ]


def test_nested_folders_and_the_category_attribute_become_tags() -> None:
    parsed = parse_opml((OPML / "nested.opml").read_bytes())
    assert [(f.name, f.url, f.category, f.tags) for f in parsed.feeds] == [
        (
            "City Hall Blog",
            "http://cityhall.example.org/rss",
            "News",
            ("Local", "Politics", "Municipal", "Weekly"),
        ),
        ("Café Reviews", "http://cafe.example.org/atom.xml", "News", ("Local", "Deeper")),
    ]
    assert parsed.skipped == [("Mailto", "not an http(s) URL: mailto:news@example.org")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<html><body/></html>", "not <opml>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (b"<opml", "not well-formed"),
    ],
)
def test_not_opml(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message):
        parse_opml(data)


def test_entity_declarations_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<opml version="2.0"><body><outline text="&b;" xmlUrl="http://x.example/f"/></body></opml>'
    )
    with pytest.raises(OpmlError, match="entity declarations"):
        parse_opml(bomb)


def project(tmp_path: Path, config: Path) -> Path:
    folder = tmp_path / "project" / "config"
    folder.mkdir(parents=True)
    shutil.copy(config, folder / "sources.toml")
    return folder / "sources.toml"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_import_every_dialect_into_a_commented_config(tmp_path: Path) -> None:
    config_path = project(tmp_path, COMMENTED)
    before = config_path.read_text(encoding="utf-8")
    for name in ("feedly.opml", "inoreader.xml", "miniflux.opml", "freshrss.opml.xml"):
        code, output = run("import-opml", "--config", str(config_path), str(OPML / name))
        assert code == 0, output
    after = config_path.read_text(encoding="utf-8")
    assert after.startswith(before[: before.index("# Real sources look like this")])
    assert after.endswith(before[before.index("# Real sources look like this") :])
    config = load_config(config_path)
    by_url = {s.url: s for s in config.sources}
    assert len(config.sources) == 3 + 3 + 2 + 1 + 2  # the blog is in Feedly and Miniflux
    blog = by_url["https://blog.example.com/feed/"]
    assert (blog.name, blog.category) == ("Example Engineering Blog", "Tech")
    loose = by_url["https://loose.example.net/index.xml?lang=zh&format=rss"]
    assert loose.category == "Uncategorized"
    assert by_url["https://hsb.example.cn/feed.xml"].id == "huashangbao"


def test_import_skips_known_feeds_and_reports_them(tmp_path: Path) -> None:
    config_path = project(tmp_path, COMMENTED)
    run("import-opml", "--config", str(config_path), str(OPML / "feedly.opml"))
    before = config_path.read_bytes()
    code, output = run(
        "import-opml", "--config", str(config_path), "--json", str(OPML / "feedly.opml")
    )
    assert code == 0
    report = json.loads(output)
    assert report["added"] == []
    assert len(report["skipped"]) == 3
    assert "already configured" in report["skipped"][0]["reason"]
    assert config_path.read_bytes() == before


def test_import_dry_run_writes_nothing(tmp_path: Path) -> None:
    config_path = project(tmp_path, COMMENTED)
    before = config_path.read_bytes()
    code, output = run(
        "import-opml", "--config", str(config_path), "--dry-run", str(OPML / "nested.opml")
    )
    assert code == 0
    assert "would add 2 source(s), skipped 1" in output
    assert config_path.read_bytes() == before


def test_import_an_unreadable_file_fails(tmp_path: Path) -> None:
    config_path = project(tmp_path, COMMENTED)
    bad = tmp_path / "bad.opml"
    bad.write_text("<html/>")
    code, output = run("import-opml", "--config", str(config_path), str(bad))
    assert code == 1
    assert "not <opml>" in output


@pytest.mark.parametrize("config", [COMMENTED, SAMPLE])
def test_export_then_import_gives_the_same_sources(tmp_path: Path, config: Path) -> None:
    config_path = project(tmp_path, config)
    if config == SAMPLE:
        shutil.copytree(SAMPLE.parent / "samples", config_path.parent / "samples")
    exported = tmp_path / "out.opml"
    code, output = run("export-opml", "--config", str(config_path), "--output", str(exported))
    assert code == 0, output
    fresh = tmp_path / "fresh" / "config" / "sources.toml"
    fresh.parent.mkdir(parents=True)
    fresh.write_text("# a new installation\n", encoding="utf-8")
    if config == SAMPLE:
        shutil.copytree(SAMPLE.parent / "samples", fresh.parent / "samples")
    code, output = run("import-opml", "--config", str(fresh), str(exported))
    assert code == 0, output
    original = tomllib.loads(config_path.read_text(encoding="utf-8"))["sources"]
    imported = tomllib.loads(fresh.read_text(encoding="utf-8"))["sources"]
    assert imported == original
    assert comparable(load_config(fresh).sources) == comparable(load_config(config_path).sources)


def comparable(sources: tuple[Source, ...]) -> list[Source]:
    """Rules are not sources (not exported); file: URLs resolve under each project."""
    return [replace(s, rules=(), url=s.url.rsplit("/config/", 1)[-1]) for s in sources]


def test_export_to_stdout_is_opml_other_readers_understand(tmp_path: Path) -> None:
    config_path = project(tmp_path, COMMENTED)
    code, output = run("export-opml", "--config", str(config_path))
    assert code == 0
    parsed = parse_opml(output.encode("utf-8"))
    assert [(f.name, f.category) for f in parsed.feeds] == [
        ("三秦都市报 · 要闻", "三秦都市报"),
        ("三秦都市报 · 交通", "三秦都市报"),
        ("西安晚报", "西安晚报"),
    ]
    assert 'category="/三秦都市报新闻,/要闻"' in output
