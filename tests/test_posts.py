"""Static-site posts: the example's exact shape, YAML safety, import and republish."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.cli.main import main
from aggregator.config.loader import Config, load_config
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.errors import ConfigError
from aggregator.fetch.fetcher import Fetcher
from aggregator.parse.sanitize import clean_html
from aggregator.publish.posts import (
    ENDRAW,
    RAW,
    PostData,
    PostWriter,
    article_from_post,
    build_post,
    code_from_link,
    has_attribution,
    post_slug,
    protect_liquid,
    read_post,
    render_post,
    unprotect_liquid,
    with_attribution,
    yaml_quoted,
    yaml_words,
)
from aggregator.publish.publisher import Publisher
from aggregator.run.poll import poll_source
from aggregator.store.records import StoredArticle
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock, run_aggregator
from tests.feedserver import FeedServer
from tests.publishing import served

SEED = Path(__file__).resolve().parent / "fixtures" / "seed" / "000_aacddcea547c7f45.txt"
SITE = "//finews.withounder.com"
SEED_NAME = "2021-12-24-nw202112242224484383.md"
ATTRIBUTION = '<p class="em_media">（文章来源：三秦都市报）</p>'


def seed_parts() -> dict[str, str]:
    """The example article's pieces, cut out with plain string operations."""
    text = SEED.read_text(encoding="utf-8")
    front, body = text.split("\n---\n", 1)
    meta = dict(line.split(": ", 1) for line in front.splitlines()[1:])
    article, link, _footer = body.rsplit("\n\n", 2)
    return {
        "title": meta["title"][1:-1],
        "article": article,
        "link": link[1:-1],
        "tag": meta["tags"],
        "category_slug": meta["categories"],
    }


def rss(items: list[dict[str, str]], title: str = "三秦都市报") -> bytes:
    """RSS without a channel link, so the feed's identity is its URL (as after import)."""
    parts = [
        "<item>"
        f"<title>{escape(i['title'])}</title><link>{escape(i['link'])}</link>"
        f'<guid isPermaLink="false">{escape(i.get("guid", i["link"]))}</guid>'
        f"<pubDate>{i.get('date', 'Fri, 24 Dec 2021 03:00:26 +0800')}</pubDate>"
        f"<description>{escape(i['body'])}</description></item>"
        for i in items
    ]
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><description>test</description>"
        f"{''.join(parts)}</channel></rss>"
    ).encode()


def seed_item(with_attribution_paragraph: bool = False) -> dict[str, str]:
    parts = seed_parts()
    body = parts["article"]
    if not with_attribution_paragraph:
        body = body.removesuffix(ATTRIBUTION)
    return {"title": parts["title"], "link": parts["link"], "body": body, "guid": "sanqin-1"}


POSTS_TABLE = f"""
[publish.posts]
output_dir = "site/_posts"
site_url = "{SITE}"
"""


def make_config(folder: Path, url: str, extra: str = POSTS_TABLE, source_extra: str = "") -> Path:
    """A project folder whose config polls url as source sanqin (the example's taxonomy)."""
    (folder / "config").mkdir(parents=True, exist_ok=True)
    path = folder / "config" / "sources.toml"
    path.write_text(
        f"""[settings]
database = "data/test.db"
output_dir = "feeds"
base_url = "http://feeds.example.org"

[[sources]]
id = "sanqin"
name = "三秦都市报"
url = "{url}"
category = "三秦都市报"
category_slug = "sanqindushibao"
tags = ["三秦都市报新闻"]
share_code = {{ param = "infoCode" }}
{source_extra}
{extra}""",
        encoding="utf-8",
    )
    return path


def poll(config: Config, clock: Clock) -> None:
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        store.sync_sources(config.sources)
        for source in config.sources:
            assert poll_source(source, store, fetcher, clock=clock).result in ("ok", "unchanged")
        Publisher(config, store).publish()
        PostWriter(config, store).sync()


def files(folder: Path) -> dict[str, bytes]:
    return served(folder)


# --- the golden test ---------------------------------------------------------------------


@pytest.mark.parametrize("already_attributed", [False, True], ids=["added", "kept"])
def test_post_is_byte_identical_to_the_example(
    already_attributed: bool, server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    url = server.set("/sanqin.xml", rss([seed_item(already_attributed)]))
    config = load_config(make_config(tmp_path / "project", url))
    poll(config, clock)
    written = sorted(config.posts.output_dir.iterdir())
    assert [p.name for p in written] == [SEED_NAME]
    assert written[0].read_bytes() == SEED.read_bytes()


def test_the_example_reads_back() -> None:
    post = read_post(SEED.read_text(encoding="utf-8"))
    parts = seed_parts()
    assert post.title == "凝神聚力保畅通 忠诚守护“西大门”"
    assert post.date == datetime(2021, 12, 23, 19, 0, 26, tzinfo=UTC)
    assert post.date.utcoffset() == timedelta(hours=8)
    assert (post.categories, post.tags) == (("sanqindushibao",), ("三秦都市报新闻",))
    assert post.link == parts["link"] and post.html == parts["article"]
    assert post.layout == "post" and post.code == ""
    assert render_post(post) == SEED.read_text(encoding="utf-8")


# --- YAML safety ---------------------------------------------------------------------------

EDGE_TITLES = [
    'He said "no"',
    "Title: with colon",
    "# not a comment",
    "back\\slash \\n not a newline",
    "line one\nline two",
    "emoji 🎉📰 and 中文",
    "- starts like a list",
    "'single' quotes",
    "tab\there and \r return",
    "yes",
    "null",
    "2021-12-24",
    "",
    "  padded  ",
    "\u2028line separator\u2029 and \x85 NEL and \ufeff BOM",
    "{braces} [brackets] & *star !bang %percent @at `tick` |pipe >gt",
]


@pytest.mark.parametrize("title", EDGE_TITLES)
def test_titles_round_trip_through_yaml(title: str) -> None:
    post = PostData(
        title=title,
        date=datetime(2021, 12, 24, 3, 0, 26, tzinfo=timezone(timedelta(hours=8))),
        categories=("sanqindushibao",),
        tags=("三秦都市报新闻", title or "x"),
        html="<p>正文</p>",
        link="http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW1",
        footer="[返回](//x/)",
    )
    text = render_post(post)
    front = text.split("\n---\n", 1)[0].removeprefix("---\n")
    meta = yaml.safe_load(front)
    assert meta["title"] == title
    tags = meta["tags"].split() if isinstance(meta["tags"], str) else meta["tags"]
    assert tags == ["三秦都市报新闻", title or "x"]
    assert read_post(text) == post


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_is_a_valid_quoted_scalar(text: str) -> None:
    assert yaml.safe_load("title: " + yaml_quoted(text)) == {"title": text}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1).filter(lambda t: t.strip() != ""), max_size=4))
def test_any_tag_names_read_back(names: list[str]) -> None:
    value = yaml.safe_load("tags: " + yaml_words(names))["tags"]
    got = value.split() if isinstance(value, str) else value
    assert got == names


_names = st.text(min_size=1).filter(lambda t: t.strip() != "")
_slugs = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(),
    categories=st.lists(_slugs, max_size=3),
    tags=st.lists(_names, max_size=3),
    code=st.text(),
    seconds=st.integers(0, 4_000_000_000),
    offset=st.integers(-12 * 60, 14 * 60),
)
def test_any_post_reads_back_as_written(
    title: str, categories: list[str], tags: list[str], code: str, seconds: int, offset: int
) -> None:
    zone = timezone(timedelta(minutes=offset))
    post = PostData(
        title=title,
        date=datetime.fromtimestamp(seconds, zone),
        categories=tuple(categories),
        tags=tuple(tags),
        html="<p>正文</p>\n <p>二</p>",
        link="http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW1",
        footer="[返回](//x/category/a.html)｜[返回首页](//x/)",
        code=code.strip(),
    )
    assert read_post(render_post(post)) == post


# --- keeping the folder in step ------------------------------------------------------------


def test_unchanged_post_is_not_touched_and_an_edit_rewrites_it(
    server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    item = seed_item()
    url = server.set("/sanqin.xml", rss([item]))
    config = load_config(make_config(tmp_path / "project", url))
    poll(config, clock)
    path = config.posts.output_dir / SEED_NAME
    old = time.time() - 3600
    os.utime(path, (old, old))
    stamp = path.stat().st_mtime_ns

    server.resources["/sanqin.xml"].validators = False  # a full 200 with the same bytes
    clock.advance(3600)
    poll(config, clock)
    with SqliteStore(config.settings.database) as store:
        report = PostWriter(config, store).sync()
    assert (report.written, report.removed, report.unchanged) == ([], [], 1)
    assert path.stat().st_mtime_ns == stamp

    server.set("/sanqin.xml", rss([{**item, "title": "新标题：改了"}]))
    clock.advance(3600)
    poll(config, clock)
    assert [p.name for p in config.posts.output_dir.iterdir()] == [SEED_NAME]
    assert path.stat().st_mtime_ns != stamp
    assert read_post(path.read_text(encoding="utf-8")).title == "新标题：改了"

    # A new date moves the post to a new file name; there is still one post.
    server.set("/sanqin.xml", rss([{**item, "date": "Sat, 25 Dec 2021 09:00:00 +0800"}]))
    clock.advance(3600)
    poll(config, clock)
    assert [p.name for p in config.posts.output_dir.iterdir()] == [
        "2021-12-25-nw202112242224484383.md"
    ]


@pytest.mark.parametrize("remove", [False, True])
def test_retention_removes_posts_only_when_configured(
    remove: bool, server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    url = server.set("/sanqin.xml", rss([seed_item()]))
    table = POSTS_TABLE + f"remove_missing = {'true' if remove else 'false'}\n"
    config = load_config(make_config(tmp_path / "project", url, table))
    poll(config, clock)
    folder = config.posts.output_dir
    (folder / "2020-01-01-about-us.md").write_text(
        '---\nlayout: post\ntitle: "About"\ndate: 2020-01-01 00:00:00 +0800\n---\nHi', "utf-8"
    )
    # What retention does: the entry leaves the store.
    with sqlite3.connect(config.settings.database) as db:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM entries")
    with SqliteStore(config.settings.database) as store:
        report = PostWriter(config, store).sync()
    names = sorted(p.name for p in folder.iterdir())
    if remove:
        assert [p.name for p in report.removed] == [SEED_NAME]
        assert names == ["2020-01-01-about-us.md"]  # a hand-written post is never removed
    else:
        assert report.removed == [] and names == ["2020-01-01-about-us.md", SEED_NAME]


def test_attribution_is_added_once() -> None:
    assert has_attribution("<p>a</p>" + ATTRIBUTION)
    assert has_attribution('<p>a</p><p class="x em_media">（来源：别处）</p>\n')
    assert not has_attribution('<p class="em_media">x</p><p>later</p>')
    assert not has_attribution("<p>a</p>")
    assert with_attribution("<p>a</p>", "三秦都市报") == "<p>a</p>" + ATTRIBUTION
    assert with_attribution("<p>a</p>" + ATTRIBUTION, "别的") == "<p>a</p>" + ATTRIBUTION
    assert with_attribution("<p>a</p>", "A&B <x>").endswith("（文章来源：A&amp;B &lt;x&gt;）</p>")


def test_slugs_come_from_the_share_code_only() -> None:
    assert post_slug("NW202112242224484383") == "nw202112242224484383"
    odd = post_slug("guid:http://example.cn/a?id=1")
    assert odd.startswith("guid-http-example-cn-a-id-1-") and odd == post_slug(
        "guid:http://example.cn/a?id=1"
    )
    assert post_slug("guid:http://example.cn/a?id=2") != odd
    assert post_slug("文章") != post_slug("新闻")


def test_attribution_comes_from_the_source(
    server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    url = server.set("/sanqin.xml", rss([seed_item()]))
    config = load_config(
        make_config(tmp_path / "project", url, source_extra='attribution = "三秦网"')
    )
    poll(config, clock)
    text = (config.posts.output_dir / SEED_NAME).read_text(encoding="utf-8")
    assert '<p class="em_media">（文章来源：三秦网）</p>\n\n<http' in text
    assert text.count("em_media") == 1


# --- import and republish ------------------------------------------------------------------


def test_import_into_an_empty_store_republishes_the_same_posts_and_feeds(
    server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    item = seed_item()
    other = {
        "title": '引号"、冒号: 和 #井号 🎉',
        "link": "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202112250000000001",
        "body": "<p>第二篇。</p>\n",
        "date": "Sat, 25 Dec 2021 08:30:00 +0800",
    }
    url = server.set("/sanqin.xml", rss([item, other]))
    # A second source whose links carry no share code: its code is its guid.
    plain = server.set(
        "/plain.xml",
        rss(
            [
                {
                    "title": "没有分享码的文章",
                    "link": "http://www.example.cn/news/1.html",
                    "guid": "plain-guid-1",
                    "body": "<p>第三篇。</p>",
                }
            ],
            title="西安晚报",
        ),
    )
    second = f"""
[[sources]]
id = "plain"
name = "西安晚报"
url = "{plain}"
category = "西安晚报"
category_slug = "xianwanbao"
tags = ["西安新闻"]
share_code = {{ regex = "infoCode=(\\\\w+)" }}
"""
    original = load_config(make_config(tmp_path / "a", url, POSTS_TABLE + second))
    poll(original, clock)
    posts_a = files(original.posts.output_dir)
    feeds_a = files(original.settings.output_dir)
    assert len(posts_a) == 3
    guid_post = next(t for t in posts_a.values() if "没有分享码" in t.decode())
    # An opaque guid identifies the article within its source only.
    assert 'share_code: "guid@plain:plain-guid-1"' in guid_post.decode()

    copy_path = make_config(tmp_path / "b", url, POSTS_TABLE + second)
    runner = CliRunner()
    imported = runner.invoke(
        main, ["import-posts", "--config", str(copy_path), str(original.posts.output_dir)]
    )
    assert imported.exit_code == 0, imported.output
    assert "imported 3 post(s)" in imported.output
    published = runner.invoke(main, ["publish", "--config", str(copy_path)])
    assert published.exit_code == 0, published.output
    copy = load_config(copy_path)
    assert files(copy.posts.output_dir) == posts_a
    assert files(copy.settings.output_dir) == feeds_a

    again = runner.invoke(
        main, ["import-posts", "--config", str(copy_path), str(copy.posts.output_dir)]
    )
    assert "imported 0 post(s), 3 already stored" in again.output


def test_import_reports_unreadable_files_and_goes_on(tmp_path: Path, server: FeedServer) -> None:
    folder = tmp_path / "_posts"
    folder.mkdir()
    (folder / "2021-12-24-seed.md").write_bytes(SEED.read_bytes())
    (folder / "2021-12-25-broken.md").write_text("no front matter", "utf-8")
    (folder / "2021-12-26-bad-yaml.md").write_text("---\ntitle: [\ndate: x\n---\nbody", "utf-8")
    path = make_config(tmp_path / "project", server.url("/unused.xml"))
    result = CliRunner().invoke(main, ["import-posts", "--config", str(path), str(folder)])
    assert result.exit_code == 1
    assert "imported 1 post(s), 0 already stored, 2 unreadable" in result.output
    config = load_config(path)
    with SqliteStore(config.settings.database) as store:
        [article] = store.articles(("all", ""), 10)
    assert article.code == "NW202112242224484383"
    assert article.entry_categories == ("三秦都市报",) and article.tags == ("三秦都市报新闻",)
    assert article.source_id == "sanqin"
    assert not article.content.endswith(ATTRIBUTION)


# --- command line and daemon ---------------------------------------------------------------


def test_publish_group_keeps_publish_and_adds_posts(
    server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    url = server.set("/sanqin.xml", rss([seed_item()]))
    path = make_config(tmp_path / "project", url, extra="")
    config = load_config(path)
    runner = CliRunner()
    result = runner.invoke(main, ["poll", "--all", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert (config.settings.output_dir / "all.xml").exists()
    refused = runner.invoke(main, ["publish", "posts", "--config", str(path)])
    assert refused.exit_code == 2 and "[publish.posts]" in refused.output

    make_config(tmp_path / "project", url)
    config = load_config(path)
    (config.settings.output_dir / "all.xml").unlink()
    result = runner.invoke(main, ["publish", "--config", str(path), "posts"])
    assert result.exit_code == 0, result.output
    assert "posts: 1 written" in result.output
    assert (config.posts.output_dir / SEED_NAME).read_bytes() == SEED.read_bytes()
    assert not (config.settings.output_dir / "all.xml").exists()  # posts only
    result = runner.invoke(main, ["publish", "--config", str(path)])
    assert result.exit_code == 0 and (config.settings.output_dir / "all.xml").exists()
    assert "posts: 0 written, 0 removed, 1 unchanged" in result.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_daemon_writes_posts_after_polls(server: FeedServer, tmp_path: Path) -> None:
    from aggregator.run.daemon import Daemon

    url = server.set("/sanqin.xml", rss([seed_item()]))
    path = make_config(tmp_path / "project", url)
    text = path.read_text("utf-8").replace(
        "[settings]\n", f"[settings]\nport = {_free_port()}\npublish_delay = 0.05\n"
    )
    path.write_text(text, "utf-8")
    daemon = Daemon(path, watch_interval=0.1)
    daemon.start()
    try:
        target = daemon.config.posts.output_dir / SEED_NAME
        deadline = time.monotonic() + 10
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert target.read_bytes() == SEED.read_bytes()
    finally:
        daemon.stop()


# --- config ----------------------------------------------------------------------------------


def test_posts_config_defaults_and_validation(tmp_path: Path) -> None:
    path = make_config(tmp_path / "project", "http://127.0.0.1/x.xml", extra="")
    config = load_config(path)
    assert not config.posts.enabled
    assert config.posts.layout == "post" and config.posts.filename == "{date}-{slug}.md"

    config = load_config(make_config(tmp_path / "project", "http://127.0.0.1/x.xml"))
    assert config.posts.enabled and config.posts.site_url == SITE
    assert config.posts.output_dir == tmp_path / "project" / "site" / "_posts"

    bad = """
[publish.posts]
site_url = "finews.withounder.com"
filename = "{date}.md"
back_text = "返回{label}"
colour = "red"
"""
    path = make_config(tmp_path / "project", "http://127.0.0.1/x.xml", extra=bad)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = path.read_text("utf-8").splitlines()
    found = {p.key: p for p in caught.value.problems}
    assert set(found) == {
        "publish.posts.site_url",
        "publish.posts.filename",
        "publish.posts.back_text",
        "publish.posts.colour",
    }
    for key, problem in found.items():
        assert problem.line is not None
        assert lines[problem.line - 1].startswith(key.rsplit(".", 1)[1])


def test_the_config_example_is_valid(tmp_path: Path) -> None:
    """The commented [publish.posts] example in config/sources.toml works when uncommented."""
    sample = Path(__file__).resolve().parent.parent / "config" / "sources.toml"
    lines = sample.read_text("utf-8").splitlines()
    start = lines.index("# [publish.posts]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("# ").removeprefix("#"))
    path = make_config(tmp_path / "project", "http://127.0.0.1/x.xml", extra="\n".join(block))
    config: Any = load_config(path)
    assert config.posts.enabled and config.posts.site_url


def test_the_date_is_in_the_source_time_zone(
    server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    url = server.set("/sanqin.xml", rss([seed_item()]))
    config = load_config(
        make_config(tmp_path / "project", url, source_extra='timezone = "America/New_York"')
    )
    poll(config, clock)
    [path] = config.posts.output_dir.iterdir()
    assert path.name == "2021-12-23-nw202112242224484383.md"
    assert "\ndate: 2021-12-23 14:00:26 -0500\n" in path.read_text("utf-8")


# --- every post imports back; Liquid in articles ------------------------------------------

LIQUID_BODY = (
    "<p>模板语法 {{ site.title }} 与 {% include evil.html %} 原样显示。</p>"
    "<p>还有 {%- endraw -%} 和 {% endraw %} 以及末尾的 {</p>"
)


def test_a_post_without_a_share_link_imports_back_to_the_same_article(
    server: FeedServer, tmp_path: Path, clock: Clock
) -> None:
    """An article with neither link nor guid (its code a hash of title and date): its post
    carries its share_code, and
    `aggregator import-posts`, run as a command, stores the same article from it."""
    feed = (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        "<title>三秦都市报</title><description>test</description>"
        "<item><title>没有链接的文章</title>"
        "<pubDate>Fri, 24 Dec 2021 03:00:26 +0800</pubDate>"
        f"<description>{escape(LIQUID_BODY)}</description></item>"
        "</channel></rss>"
    ).encode()
    url = server.set("/sanqin.xml", feed)
    original = load_config(make_config(tmp_path / "a", url))
    poll(original, clock)
    [post_file] = original.posts.output_dir.iterdir()
    text = post_file.read_text(encoding="utf-8")
    # The code is a hash of title and date, scoped to the source (aggregator.identity.identify).
    assert re.search(r'\nshare_code: "hash@[a-z0-9_-]+:[0-9a-f]{40}"\n', text)
    assert "\n<http" not in text
    assert "\n{% raw %}<p>模板语法 {{ site.title }}" in text
    assert "{%- endraw -%}" not in text and "&#123;%- endraw -%}" in text
    copy_path = make_config(tmp_path / "b", url)
    imported = run_aggregator(
        "import-posts", "--config", str(copy_path), str(original.posts.output_dir)
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "imported 1 post(s), 0 already stored, 0 unreadable\n"
    copy = load_config(copy_path)
    with SqliteStore(original.settings.database) as a, SqliteStore(copy.settings.database) as b:
        [before] = a.articles(("all", ""), 10)
        [after] = b.articles(("all", ""), 10)
    same = ("code", "title", "link", "published", "content", "source_id", "tags")
    assert {k: getattr(after, k) for k in same} == {k: getattr(before, k) for k in same}
    assert after.entry_categories == before.entry_categories
    assert "{{ site.title }}" in after.content and "{%- endraw -%}" in after.content


_plain_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
_liquid_text = st.lists(
    st.sampled_from(["{{", "}}", "{%", "%}", "-", " ", "endraw", "raw", "&#123;", "{", "x", "文"]),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_liquid_text, st.text(max_size=30)))
def test_liquid_is_protected_only_where_it_appears(text: str) -> None:
    protected = protect_liquid(text)
    if "{{" not in text and "{%" not in text:
        assert protected == text
        return
    assert protected.startswith(RAW) and protected.endswith(ENDRAW)
    inner = protected[len(RAW) : -len(ENDRAW)]
    # Liquid ends a raw block at the first endraw tag: there is none but ours.
    assert not re.search(r"\{%-?\s*endraw\b", inner)
    if "&#123;" not in text:
        assert unprotect_liquid(protected) == text


@settings(max_examples=150, deadline=None)
@given(
    title=_plain_text,
    body=st.one_of(_liquid_text, _plain_text),
    tags=st.lists(_names, max_size=2),
    linked=st.sampled_from(["share", "guid", "link", "guid-no-link", "nothing"]),
    code=st.from_regex(r"[A-Za-z0-9:_-]{1,30}", fullmatch=True),
    seconds=st.integers(0, 4_000_000_000),
)
def test_every_post_written_imports_back_to_its_article(
    tmp_path_factory: pytest.TempPathFactory,
    title: str,
    body: str,
    tags: list[str],
    linked: str,
    code: str,
    seconds: int,
) -> None:
    config = _ROUND_TRIP_CONFIG.get() or _ROUND_TRIP_CONFIG.make(tmp_path_factory)
    """Whatever gave the article its share code (its share link, its guid, its plain link,
    a hash of title and date when it has neither link nor guid)."""
    link = {
        "share": f"http://finews.zning.xyz/html_News/NewsShare.html?infoCode={code}",
        "guid": f"https://www.example.cn/news/{code}.html",
        "link": f"https://www.example.cn/news/{code}.html",
    }.get(linked, "")
    when = datetime.fromtimestamp(seconds, UTC)
    guid = f"guid:{code}" if linked.startswith("guid") else None
    found, _rule = code_from_link(link, [ShareCodeRule("param", "infoCode")], title, when)
    content = clean_html(f"<p>{escape(body)}</p>", 10_000)
    article = StoredArticle(
        code=guid or found,
        title=title,
        link=link,
        published=when,
        updated=when,
        author="",
        summary="",
        content=content,
        categories=(),
        enclosures=(),
        source_id="sanqin",
        tags=("三秦都市报新闻", *tags),
        entry_categories=("三秦都市报",),
    )
    written = read_post(render_post(build_post(article, config)))
    assert written.link or written.code  # what import-posts needs to know the article
    back = article_from_post(written, config)
    assert back == replace(article, tags=tuple(dict.fromkeys(article.tags)))


class _OneConfig:
    """One config for every example of a hypothesis test (a fixture would be rebuilt
    for none of them and shared by all anyway)."""

    def __init__(self) -> None:
        self.config: Config | None = None

    def get(self) -> Config | None:
        return self.config

    def make(self, factory: pytest.TempPathFactory) -> Config:
        folder = factory.mktemp("roundtrip")
        self.config = load_config(make_config(folder, "http://127.0.0.1:9/unused.xml"))
        return self.config


_ROUND_TRIP_CONFIG = _OneConfig()
