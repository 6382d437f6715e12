"""OPML import of the shapes real feed readers export, and export -> import round trips."""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import Source, load_config
from aggregator.config.opml import OpmlError, parse_opml
from tests.conftest import run_aggregator

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
    return result.exit_code, result.stdout


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
    result = CliRunner().invoke(main, ["import-opml", "--config", str(config_path), str(bad)])
    assert result.exit_code == 1
    assert "not <opml>" in result.stderr


@pytest.mark.parametrize("secrets", [True, False], ids=["with-secrets", "without"])
def test_export_then_import_gives_the_same_sources(tmp_path: Path, secrets: bool) -> None:
    config_path = project(tmp_path, COMMENTED)
    exported = tmp_path / "out.opml"
    args = ["--include-secrets"] if secrets else []
    code, output = run("export-opml", "--config", str(config_path), "-o", str(exported), *args)
    assert code == 0, output
    fresh = tmp_path / "fresh" / "config" / "sources.toml"
    fresh.parent.mkdir(parents=True)
    fresh.write_text("# a new installation\n", encoding="utf-8")
    code, output = run("import-opml", "--config", str(fresh), str(exported))
    assert code == 0, output
    original = tomllib.loads(config_path.read_text(encoding="utf-8"))["sources"]
    imported = tomllib.loads(fresh.read_text(encoding="utf-8"))["sources"]
    if not secrets:  # the one source with headers comes back without them
        assert original[1].pop("headers") == {"Referer": "http://finews.example.cn/"}
    assert imported == original
    if secrets:
        assert comparable(load_config(fresh).sources) == comparable(
            load_config(config_path).sources
        )


def test_an_export_keeps_secrets_and_local_files_out(tmp_path: Path) -> None:
    """Run as an operator runs it: the OPML on stdout holds no header, no password and no
    local path unless asked; stderr says what was left out and why."""
    config_path = project(tmp_path, COMMENTED)
    text = config_path.read_text(encoding="utf-8")
    text = text.replace('Referer = "http://finews.example.cn/"', 'Authorization = "Bearer s3cret"')
    text = text.replace("http://www.example.org/feeds/xawb.atom", "https://me:pa55@example.org/f")
    local = tmp_path / "local.xml"
    text += f'\n[[sources]]\nid = "local"\nname = "L"\nurl = "{local.as_uri()}"\ncategory = "c"\n'
    config_path.write_text(text, encoding="utf-8")
    shared = run_aggregator("export-opml", "--config", str(config_path))
    assert shared.returncode == 0, shared.stderr
    assert "s3cret" not in shared.stdout and "pa55" not in shared.stdout
    assert str(local) not in shared.stdout and "file:" not in shared.stdout
    assert 'xmlUrl="https://example.org/f"' in shared.stdout
    assert shared.stderr.splitlines() == [
        "source 'jiaotong': left out headers, which may hold secrets (--include-secrets keeps "
        "them)",
        "source 'xawb': left out the credentials in its URL, which may hold secrets "
        "(--include-secrets keeps them)",
        "left out source 'local': a file: URL is a path on this machine",
    ]
    asked = run_aggregator("export-opml", "--config", str(config_path), "--include-secrets")
    assert asked.returncode == 0, asked.stderr
    assert "Bearer s3cret" in asked.stdout and "https://me:pa55@example.org/f" in asked.stdout
    assert "file:" not in asked.stdout
    assert asked.stderr.splitlines() == [
        "left out source 'local': a file: URL is a path on this machine"
    ]


def test_the_bundled_sample_sources_are_local_files_and_stay_out(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export-opml", "--config", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert parse_opml(result.stdout.encode("utf-8")).feeds == []
    assert result.stderr.count("a file: URL is a path on this machine") == 2


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
