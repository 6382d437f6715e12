"""Config loading: typed values, and one clear message per mistake with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config.loader import (
    ENV_OVERRIDES,
    Settings,
    default_base_url,
    load_config,
    parse_config,
)
from aggregator.config.sharecodes import KINDS, RuleKind, ShareCodeRule, register
from aggregator.errors import ConfigError, ConfigNotFound
from aggregator.fetch.request import Limits
from aggregator.parse.sandbox import ParseLimits

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
[settings]
base_url = "https://news.example.org/feeds"
port = 9000
default_interval = "45m"

[[sources]]
id = "sanqin"
name = "三秦都市报"
url = "https://finews.example.cn/rss.xml"
category = "三秦都市报"
category_slug = "sanqindushibao"
tags = ["三秦都市报新闻"]
interval = "10m"
share_code = { param = "infoCode" }

[[sources]]
id = "local"
name = "Local"
url = "file:samples/x.xml"
category = "Other"
enabled = false
share_code = { regex = "/c/(\\\\d+)\\\\.html" }
"""


def problems_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return [str(p) for p in caught.value.problems]


def test_bundled_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "sources.toml", env={})
    assert len(config.sources) >= 2
    assert all(s.url.startswith("file:") for s in config.sources)
    assert config.settings.port == 8080
    assert config.category_term("三秦都市报").slug == "sanqindushibao"
    assert config.tag_term("三秦都市报新闻").slug == "sanqin-dushibao-xinwen"


def test_the_bundled_base_url_follows_host_and_port() -> None:
    """The bundled file pins no base_url, so links follow the port it is served on."""
    bundled = ROOT / "config" / "sources.toml"
    assert load_config(bundled, env={}).settings.base_url == "http://127.0.0.1:8080"
    moved = load_config(bundled, env={"AGGREGATOR_PORT": "29051"}).settings
    assert (moved.port, moved.base_url) == (29051, "http://127.0.0.1:29051")
    assert default_base_url("0.0.0.0", 80) == "http://127.0.0.1:80"  # no address to link to
    assert default_base_url("::1", 8080) == "http://[::1]:8080"


def test_good_config_is_typed(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    path.write_text(GOOD, encoding="utf-8")
    config = load_config(path, env={})
    assert config.settings.base_url == "https://news.example.org/feeds"
    assert config.settings.default_interval == 2700
    assert config.settings.database == tmp_path / "data" / "aggregator.db"
    sanqin, local = config.sources
    assert sanqin.interval == 600 and sanqin.tags == ("三秦都市报新闻",)
    assert sanqin.share_code == ShareCodeRule("param", "infoCode")
    assert local.interval == 2700 and not local.enabled
    assert local.url == (tmp_path / "samples" / "x.xml").as_uri()
    assert local.share_code == ShareCodeRule("regex", r"/c/(\d+)\.html")


def test_env_overrides_settings(tmp_path: Path) -> None:
    env = {
        "AGGREGATOR_PORT": "9100",
        "AGGREGATOR_BASE_URL": "https://prod.example.org",
        "AGGREGATOR_DATABASE": "/srv/agg.db",
    }
    config = parse_config(GOOD, tmp_path / "config" / "sources.toml", env)
    assert config.settings.port == 9100
    assert config.settings.base_url == "https://prod.example.org"
    assert config.settings.database == Path("/srv/agg.db")
    assert sorted(ENV_OVERRIDES.values()) == ["base_url", "database", "host", "output_dir", "port"]


def test_limits_are_the_settings_declared_as_limits(tmp_path: Path) -> None:
    """Limits and ParseLimits take their values, and their defaults, from [settings]."""
    assert Limits.from_settings(Settings()) == Limits()
    assert ParseLimits.from_settings(Settings()) == ParseLimits()
    text = GOOD.replace(
        "[settings]\n",
        '[settings]\nfetch_deadline = "90s"\nper_host_limit = 2\nmax_title_length = 40\n'
        'parse_timeout = "5s"\n',
    )
    settings = parse_config(text, tmp_path / "config" / "sources.toml", {}).settings
    fetch = Limits.from_settings(settings)
    assert (fetch.deadline, fetch.per_host, fetch.connect_timeout) == (90.0, 2, 10.0)
    parse = ParseLimits.from_settings(settings)
    assert (parse.timeout, parse.fields.title, parse.fields.entries) == (5.0, 40, 2000)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'interval = "10m"',
            'interval = "soon"',
            ":13: sources[0].interval (source 'sanqin'): expected a duration",
        ),
        (
            'interval = "10m"',
            'intervall = "10m"',
            ":13: sources[0].intervall (source 'sanqin'): unknown key",
        ),
        (
            'tags = ["三秦都市报新闻"]',
            "tags = 5",
            ":12: sources[0].tags (source 'sanqin'): expected a list",
        ),
        (
            'url = "https://finews.example.cn/rss.xml"',
            'url = "ftp://x/y"',
            ":9: sources[0].url (source 'sanqin'): expected an http, https or file URL",
        ),
        (
            'name = "三秦都市报"\n',
            "",
            ":6: sources[0] (source 'sanqin'): missing required key 'name'",
        ),
        ('id = "local"', 'id = "sanqin"', ":17: sources[1].id (source 'sanqin'): duplicate id"),
        ("port = 9000", "port = 99999", ":3: settings.port: expected a port number"),
        (
            'share_code = { param = "infoCode" }',
            'share_code = { regex = "no group" }',
            ":14: sources[0].share_code (source 'sanqin'): the regex must have exactly one group",
        ),
    ],
)
def test_mistakes_name_file_line_key_and_source(
    old: str, new: str, expected: str, tmp_path: Path
) -> None:
    assert old in GOOD
    found = problems_of(GOOD.replace(old, new, 1), tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith(str(tmp_path / "config" / "sources.toml"))
    assert expected in found[0]


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    found = problems_of(GOOD.replace("port = 9000", "port = = 9000"), tmp_path)
    assert len(found) == 1
    assert ":3: (syntax)" in found[0]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "10m"', 'interval = "x"').replace("port = 9000", "port = -1")
    text = text.replace("enabled = false", 'enabled = "no"')
    found = problems_of(text, tmp_path)
    assert len(found) == 3
    keys = [f.split(": ")[1].split(" (")[0] for f in found]
    assert keys == ["settings.port", "sources[0].interval", "sources[1].enabled"]


def test_a_byte_order_mark_is_not_part_of_the_file(tmp_path: Path) -> None:
    config = parse_config("\ufeff" + GOOD, tmp_path / "config" / "sources.toml", env={})
    assert [s.id for s in config.sources] == ["sanqin", "local"]
    found = problems_of("\ufeff" + GOOD.replace("port = 9000", "port = = 9000"), tmp_path)
    assert ":3: (syntax)" in found[0]  # lines counted as the editor shows them


def test_duplicate_urls_are_refused_with_their_line(tmp_path: Path) -> None:
    text = GOOD.replace('url = "file:samples/x.xml"', 'url = "https://FINEWS.example.cn/rss.xml"')
    found = problems_of(text, tmp_path)
    assert found == [
        f"{tmp_path / 'config' / 'sources.toml'}:19: sources[1].url (source 'local'): "
        "duplicate url, already used by source 'sanqin'"
    ]


def test_a_missing_file_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigNotFound) as caught:
        load_config("config/sources.toml")
    assert caught.value.where == (
        f"looked for {tmp_path}/config/sources.toml, relative to the current folder {tmp_path}"
    )
    with pytest.raises(ConfigNotFound) as absolute:
        load_config(tmp_path / "nowhere.toml")
    assert absolute.value.where == f"looked for {tmp_path}/nowhere.toml"


def test_a_share_code_kind_is_one_registration(tmp_path: Path) -> None:
    """A kind brings its config check and its extractor; the config and the rule use them."""

    def check(value: str) -> None:
        if not value.isdigit():
            raise ValueError("expected a path segment number")

    register(
        RuleKind(
            key="segment",
            example='"2"',
            check=check,
            extract=lambda link, n: link.split("/")[int(n)] if link.count("/") >= int(n) else None,
            label=lambda n: f"segment:{n}",
        )
    )
    try:
        text = GOOD.replace('{ param = "infoCode" }', '{ segment = "3" }')
        config = parse_config(text, tmp_path / "config" / "sources.toml", {})
        rule = config.sources[0].share_code
        assert rule == ShareCodeRule("segment", "3")
        assert (rule.name, rule.find("http://x.cn/NW1/a.html")) == ("segment:3", "NW1")
        bad = GOOD.replace('{ param = "infoCode" }', '{ segment = "x" }')
        assert any("expected a path segment number" in p for p in problems_of(bad, tmp_path))
    finally:
        del KINDS["segment"]


def test_share_code_rules_keep_the_spelling_stored_digests_were_salted_with() -> None:
    """run.poll.source_salt hashes repr(source): a rule's repr must not change."""
    assert repr(ShareCodeRule()) == "ShareCodeRule(param=None, regex=None)"
    assert repr(ShareCodeRule("param", "infoCode")) == "ShareCodeRule(param='infoCode', regex=None)"
    assert repr(ShareCodeRule("regex", "a(b)")) == "ShareCodeRule(param=None, regex='a(b)')"
