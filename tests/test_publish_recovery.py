"""What is left to publish is kept in the store until the files show it: whichever command
publishes next finishes it (tests/test_crash_publish.py kills real processes for it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import load_config
from aggregator.models import ParsedFeed
from aggregator.publish.publisher import Publisher
from aggregator.store.retention import cleanup
from aggregator.store.sqlite import SqliteStore
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.publishing import Site, record, site
from tests.reliability.kit import files_of
from tests.reliability.reader import compare_outputs
from tests.test_publish import KEYS, fill
from tests.test_publish_cache import ROWS, as_of_schema, elsewhere


def fresh(publisher: Publisher, folder: str) -> dict[str, bytes]:
    """What publishing the same store from scratch writes."""
    other = elsewhere(Site(publisher.config, publisher.store), folder)
    other.publish()
    return files_of(other.output)


def test_a_change_committed_while_a_publish_renders_keeps_its_mark(write_config: Any) -> None:
    with site(write_config) as s:
        s.add("yaowen", record(1))
        seen = s.store.unpublished()  # what a publisher reads before it renders
        assert set(seen) == {("all", ""), ("source", "yaowen")} | {
            k for k in KEYS if k[1] in ("三秦都市报", "三秦都市报新闻")
        }
        s.add("jiaotong", record(2))  # committed meanwhile, by another process say
        s.store.mark_published(seen)  # the publisher's files are durable
        left = s.store.unpublished()
        assert ("source", "jiaotong") in left and ("all", "") in left  # marked again
        assert ("source", "yaowen") not in left
        s.publisher.publish(set())  # any later publish takes them
        assert s.store.unpublished() == {}
        assert b"NW202112240300000002" in (s.out / "source/jiaotong.xml").read_bytes()


def test_a_sources_renamed_feed_marks_every_feed_showing_its_entries(write_config: Any) -> None:
    """Its entries' atom:source changes in every feed they are in, not only in the
    feeds a poll's new entries joined."""
    with site(write_config) as s:
        s.add("yaowen", record(1), record(2))
        s.add("jiaotong", record(3))
        s.publisher.publish()
        source = s.config.source("yaowen")
        assert source is not None
        renamed = ParsedFeed("rss20", "要闻（新名）", "http://finews.example.cn/new/", "", ())
        changed = s.store.ingest(source, renamed, [], s.now).changed_feeds
        assert changed == set(s.store.unpublished())
        assert {("all", ""), ("source", "yaowen"), ("tag", "三秦都市报新闻")} <= changed
        assert ("source", "jiaotong") not in changed
        s.publisher.publish(set())  # what a later command with nothing of its own does
        assert compare_outputs(files_of(s.out), fresh(s.publisher, "fresh")) == []
        assert "要闻（新名）" in (s.out / "tag" / "sanqin-dushibao-xinwen.xml").read_text("utf-8")


def test_what_a_poll_stored_without_publishing_is_published_by_the_next_command(
    server: FeedServer, write_config: Any
) -> None:
    """`poll --no-publish` stores (new entries, an edit); then a `poll` with nothing due,
    or a `cleanup` with nothing to remove, publishes it: the output is a fresh publish's."""
    items = [Item(f"NW2021122403000000{n:02d}", f"第{n}条新闻") for n in range(1, 8)]
    url = server.set("/a.xml", rss(items))
    source = {"id": "a", "name": "A", "url": url, "category": "c", "tags": ["t"]}
    path = write_config(
        [{**source, "interval": "1h", "share_code": {"param": "infoCode"}}],
        feed_entries=3,
        archive_entries=2,
    )
    config = load_config(path)
    all_xml = config.settings.output_dir / "all.xml"
    runner = CliRunner()
    assert runner.invoke(main, ["poll", "--config", str(path)]).exit_code == 0
    for number, command in enumerate(["poll", "cleanup"]):
        items[-1] = Item(items[-1].code, f"第{number}条（更正）")  # in the current document
        items.append(Item(f"NW20211224030000009{number}", "新到的一条"))
        server.set("/a.xml", rss(items))
        stored = runner.invoke(main, ["poll", "--all", "--no-publish", "--config", str(path)])
        assert stored.exit_code == 0, stored.output
        assert f"第{number}条（更正）" not in all_xml.read_text(encoding="utf-8")
        done = runner.invoke(main, [command, "--config", str(path)])
        assert done.exit_code == 0, done.output
        assert f"第{number}条（更正）" in all_xml.read_text(encoding="utf-8")
        with SqliteStore(config.settings.database) as store:
            assert store.unpublished() == {}
            expected = fresh(Publisher(config, store), f"fresh-{command}")
        assert compare_outputs(files_of(config.settings.output_dir), expected) == []


def test_retention_rewrites_the_archive_pages_that_listed_removed_entries(
    write_config: Any,
) -> None:
    with site(write_config, feed_entries=3, archive_entries=2, retain_entries=6) as s:
        fill(s, 30)
        s.publisher.publish()
        result = cleanup(s.store, s.config, s.now)
        assert result.removed
        assert s.store.holes()  # kept until published
        s.publisher.publish(result.changed_feeds)
        assert s.store.holes() == {} and s.store.unpublished() == {}
        assert compare_outputs(files_of(s.out), fresh(s.publisher, "fresh")) == []
        archive = "\n".join(
            (s.out / path).read_text(encoding="utf-8")
            for path in files_of(s.out)
            if path.startswith("archive/")
        )
        assert all(f"<title>第{int(code[-8:])}条" not in archive for code in result.removed)


def test_a_store_from_before_the_marks_publishes_every_feed_once(
    tmp_path: Path, write_config: Any
) -> None:
    """Nobody knows what an older version left half published: every feed, once."""
    with site(write_config) as s:
        fill(s, 6)
        database = s.store.database
    old = tmp_path / "v10.db"
    as_of_schema(10, database, old, ("sources", *ROWS))
    with SqliteStore(old) as store:
        assert set(store.unpublished()) == set(KEYS)
        assert store.holes() == {}
    with sqlite3.connect(old) as conn:
        assert conn.execute("SELECT count(*) FROM feed_unpublished").fetchone()[0] == len(KEYS)
