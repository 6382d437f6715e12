"""The record of what the last publish left in the output folder (publish/record.py):
`aggregator publish` with nothing to publish renders nothing, and whatever the record
cannot vouch for (a file edited or removed, an archive page gone, the config or the
program changed, a record lost or damaged, a change in the store) is published as if
there were no record."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

from aggregator.config.loader import load_config
from aggregator.publish.publisher import Publisher
from aggregator.publish.record import RECORD_NAME
from tests.conftest import run_aggregator
from tests.publishing import SOURCES, Site, record, served, site
from tests.test_publish import fill


def fresh(s: Site) -> Publisher:
    """A publisher as a new process makes it (nothing kept in memory)."""
    return Publisher(s.config, s.store)


def published_once(s: Site) -> dict[str, bytes]:
    fill(s, 12)
    s.publisher.publish()
    s.publisher.close()
    return served(s.out)


def test_nothing_to_publish_writes_nothing_and_keeps_the_record(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        before = published_once(s)
        recorded = (s.out / RECORD_NAME).read_bytes()
        stats = {name: os.stat(s.out / name).st_mtime_ns for name in before}
        assert fresh(s).publish() == []
        assert served(s.out) == before
        assert {name: os.stat(s.out / name).st_mtime_ns for name in before} == stats
        assert (s.out / RECORD_NAME).read_bytes() == recorded


def test_a_file_edited_or_removed_is_written_again(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        before = published_once(s)
        (s.out / "all.xml").write_bytes(b"<feed/>")
        (s.out / "tag").joinpath(next(p.name for p in (s.out / "tag").iterdir())).unlink()
        (s.out / "index.html").unlink()
        written = fresh(s).publish()
        assert served(s.out) == before
        names = sorted(str(p.relative_to(s.out)) for p in written)
        assert "all.xml" in names and "index.html" in names
        assert all(not n.startswith("source/") for n in names)  # the others were trusted


def test_a_removed_archive_page_is_written_again(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        before = published_once(s)
        page = next(n for n in before if n.startswith("archive/") and n.endswith("/1.json"))
        (s.out / page).unlink()
        fresh(s).publish()
        assert served(s.out) == before


def test_a_store_change_publishes_the_feeds_it_touched(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        published_once(s)
        s.add("jiaotong", record(500))
        written = {str(p.relative_to(s.out)) for p in fresh(s).publish()}
        assert "all.xml" in written and "source/jiaotong.xml" in written
        assert "source/yaowen.xml" not in written


def test_a_config_change_checks_every_feed(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        published_once(s)
        retitled = load_config(
            write_config(SOURCES, feed_entries=3, archive_entries=2, title="另一个站点")
        )
        written = Publisher(retitled, s.store).publish()
        assert {"all.xml", "index.html", "source/yaowen.xml"} <= {
            str(p.relative_to(s.out)) for p in written
        }
        assert (
            b"\xe5\x8f\xa6\xe4\xb8\x80\xe4\xb8\xaa\xe7\xab\x99\xe7\x82\xb9"
            in (s.out / "all.xml").read_bytes()
        )


def test_a_lost_or_damaged_record_costs_a_check_not_a_file(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        before = published_once(s)
        for damage in (b"", b"{not json", json.dumps({"format": 1, "context": "x"}).encode()):
            (s.out / RECORD_NAME).write_bytes(damage)
            assert fresh(s).publish() == []  # everything compared: the same bytes
            assert served(s.out) == before
        (s.out / RECORD_NAME).unlink()
        assert fresh(s).publish() == []
        assert json.loads((s.out / RECORD_NAME).read_bytes())["files"]


def test_incremental_publishes_keep_the_record_on_close(write_config: Any) -> None:
    """The daemon publishes the feeds each poll changed; its record, written when it
    stops, vouches for them to the next `aggregator publish`."""
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        published_once(s)
        daemon = fresh(s)
        daemon.publish(s.add("yaowen", record(600)))
        daemon.publish(s.add("jiaotong", record(601)))
        daemon.close()
        assert fresh(s).publish() == []


def test_another_folder_has_its_own_record(write_config: Any) -> None:
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        before = published_once(s)
        settings = replace(s.config.settings, output_dir=s.out.parent / "mirror")
        other = Publisher(replace(s.config, settings=settings), s.store)
        other.publish()
        assert served(settings.output_dir) == before


def test_a_publish_that_gives_up_leaves_the_rest_marked(write_config: Any) -> None:
    """A stopping daemon's publish ends at a feed's boundary: what it did not render
    keeps its mark, and the next publish renders it."""
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        fill(s, 12)
        marked = set(s.store.unpublished())
        rendered: list[int] = []

        def after_two() -> bool:
            rendered.append(1)
            return len(rendered) > 2

        s.publisher.publish(set(), give_up=after_two)
        left = set(s.store.unpublished())
        assert left and left < marked and len(marked - left) == 2
        fresh(s).publish(set())
        assert not s.store.unpublished()
        assert fresh(s).publish() == []
        everything = served(s.out)
        assert all(f"{s.publisher.info(k).stem}.xml" in everything for k in marked)


def test_a_command_with_nothing_to_publish_finishes_a_publish_killed_writing_its_record(
    write_config: Any,
) -> None:
    """The record is written after the feeds' marks are cleared: a publish killed while
    writing it leaves its temp file and nothing marked. The next command, finding
    nothing to publish, still removes it."""
    source = {**SOURCES[0], "url": "http://127.0.0.1:9/refused.xml"}
    path = write_config([source])
    assert run_aggregator("publish", "--config", str(path)).returncode == 0
    output = load_config(path).settings.output_dir
    left = output / f".{RECORD_NAME}.4242.abcdefgh.tmp"
    left.write_bytes(b"{")
    done = run_aggregator("poll", "--config", str(path))  # its one source fails
    assert "published 0 changed file(s)" in done.stdout, done.stdout + done.stderr
    assert not left.exists()
