"""What the crash, soak and load harnesses found, pinned down as small tests."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

import aggregator.files
import aggregator.publish.publisher
from aggregator.files import install, write_if_changed
from aggregator.serve.server import FeedServer
from tests.daemonkit import running
from tests.publishing import A, record, site


def test_a_page_is_written_before_any_document_linking_to_it(
    write_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between two writes must never leave a prev-archive link to a missing page."""
    order: list[Path] = []
    created: set[Path] = set()

    def recording(path: Path, data: bytes, *, sync_dir: bool = True) -> bool:
        order.append(path)
        if not path.exists():
            created.add(path)
        return write_if_changed(path, data, sync_dir=sync_dir)

    def installing(temp: Path, path: Path, *, sync_dir: bool = True) -> None:
        # Feeds go through files.Writer: their temp files are installed in this order.
        order.append(path)
        if not path.exists():
            created.add(path)
        install(temp, path, sync_dir=sync_dir)

    monkeypatch.setattr(aggregator.publish.publisher, "write_if_changed", recording)
    monkeypatch.setattr(aggregator.files, "install", installing)
    with site(write_config, feed_entries=3, archive_entries=2) as s:
        for first in (0, 7, 9, 30):  # the first publish, then growing by one and several pages
            s.add("yaowen", *[record(n) for n in range(first, first + 7)])
            order.clear()
            created.clear()
            s.publisher.publish()
            assert any("archive" in str(p) for p in order)
            for position, path in enumerate(order):
                if path.suffix != ".xml":
                    continue
                root = etree.fromstring(path.read_bytes())
                for link in root.findall(f"{A}link"):
                    if link.get("rel") == "prev-archive":
                        target = s.out / link.get("href", "").removeprefix(
                            s.config.settings.base_url + "/"
                        )
                        assert target.exists()
                        if target in created:  # new in this publish: on disk first
                            assert order.index(target) < position, (path, target)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


HOLDER = """
import sys, time
from pathlib import Path
from aggregator.files import FolderLock
folder = Path(sys.argv[1])
with FolderLock(folder):
    temp = folder / ".all.xml.{pid}.w1r2i3t4.tmp"
    temp.write_bytes(b"<feed/>")
    print("holding", flush=True)
    sys.stdin.readline()
    temp.rename(folder / "all.xml")
"""


def test_a_publish_removes_killed_writers_temp_files_never_a_live_writers(
    write_config: Any,
) -> None:
    """Whoever holds the output folder's lock knows every temp file there is a dead
    writer's; a writer still alive holds the lock, so its temp file is never touched."""
    with site(write_config) as s:
        s.add("yaowen", record(1))
        (s.out / "tag").mkdir(parents=True)
        dead = s.out / "tag" / f".x.xml.{_dead_pid()}.abc123de.tmp"
        mine = s.out / f".all.xml.{os.getpid()}.zz9_x1y2.tmp"  # a pid reused by us
        old = s.out / ".all.xml.k3j4h5g6.tmp"  # no pid (older versions)
        other = s.out / ".keep.tmp"  # not a name of ours
        for path in (dead, mine, old, other):
            path.write_bytes(b"<feed")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER.replace("{pid}", str(os.getpid() + 1)), str(s.out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout and holder.stdin
            assert holder.stdout.readline() == "holding\n"
            live = next(s.out.glob(".all.xml.*.w1r2i3t4.tmp"))
            publishing = threading.Thread(target=s.publisher.publish)
            publishing.start()
            publishing.join(0.5)
            assert publishing.is_alive()  # waits for the live writer
            assert live.exists() and dead.exists()
            holder.stdin.write("\n")
            holder.stdin.flush()
            publishing.join(30)
            assert not publishing.is_alive()
        finally:
            holder.kill()
            holder.wait()
        assert not live.exists()  # renamed by its writer, not removed
        assert sorted(p.name for p in s.out.rglob(".*") if p.is_file()) == [
            ".keep.tmp",
            ".publish.lock",
            ".publish.record",
        ]
        assert b"<entry>" in (s.out / "all.xml").read_bytes()  # then published over it


def test_the_daemon_clears_temp_files_left_by_a_kill(write_config: Any) -> None:
    path = write_config([])
    output = path.parent.parent / "feeds"
    output.mkdir(parents=True)
    left = output / f".all.xml.{_dead_pid()}.a1b2c3d4.tmp"
    left.write_bytes(b"<?xml version='1.0'?><feed")
    with running(path):
        assert not left.exists()
        assert (output / "all.xml").exists()


def test_a_same_size_rewrite_within_one_clock_tick_is_served(tmp_path: Path) -> None:
    """Files are stamped by (mtime, size) to a few milliseconds: a feed rewritten with
    as many bytes within one tick was once served stale until its next change."""
    feed = tmp_path / "all.xml"
    write_if_changed(feed, b"<feed>version 1</feed>")
    server = FeedServer(("127.0.0.1", 0), tmp_path)
    server.start()
    try:
        url = f"{server.url}/all.xml"
        with urllib.request.urlopen(url) as answer:
            assert answer.read() == b"<feed>version 1</feed>"
        stamp = feed.stat().st_mtime_ns
        write_if_changed(feed, b"<feed>version 2</feed>")
        os.utime(feed, ns=(stamp, stamp))  # the same tick, as a fast rewrite gets
        with urllib.request.urlopen(url) as answer:
            assert answer.read() == b"<feed>version 2</feed>"
    finally:
        server.shutdown()
        server.server_close()


def test_a_timer_firing_during_a_running_poll_is_not_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """max_instances=1 skipping a run is the no-overlap guard at work, not a fault."""
    import aggregator.run.scheduler  # noqa: F401 - installs the filter

    logger = logging.getLogger("apscheduler.scheduler")
    with caplog.at_level(logging.WARNING, logger="apscheduler.scheduler"):
        logger.warning(
            'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
            "poll s",
            1,
        )
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def test_a_subscriber_hanging_up_leaves_no_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """wrk stopping (or any reader timing out) reset hundreds of connections, and each
    printed socketserver's traceback on the daemon's stderr."""
    write_if_changed(tmp_path / "all.xml", b"<feed/>")
    server = FeedServer(("127.0.0.1", 0), tmp_path)
    server.start()
    try:
        for _ in range(5):
            conn = socket.create_connection(server.server_address[:2])
            conn.sendall(b"GET /all.xml HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # a reset, while the server waits for the next request
        time.sleep(0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
