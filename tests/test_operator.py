"""The operator's view: `aggregator status`, and `aggregator poll` on a bounded pool with a
progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from aggregator.cli.main import main, wants_progress
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEM = Item("NW202112242224484383", "凝神聚力保畅通 忠诚守护“西大门”", guid="baoji-1")
ROOT = Path(__file__).resolve().parent.parent


def src(source_id: str, url: str) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id,
        "url": url,
        "category": "测试",
        "share_code": {"param": "infoCode"},
    }


def test_status_shows_each_sources_state(server: FeedServer, write_config: Any) -> None:
    server.set("/new-home.xml", rss([ITEM]))
    path = write_config(
        [
            src("fine", server.set("/fine.xml", rss([ITEM]))),
            src("broken", server.url("/missing.xml")),
            src(
                "moved",
                server.set("/old.xml", status=301, headers={"Location": "/new-home.xml"}),
            ),
            src("gone", server.set("/gone.xml", status=410, content_type="text/plain")),
        ]
    )
    runner = CliRunner()
    polled = runner.invoke(main, ["poll", "--all", "--config", str(path)])
    assert polled.exit_code == 1, polled.output  # two sources failed
    second = runner.invoke(main, ["poll", "broken", "--config", str(path)])
    assert second.exit_code == 1

    status = runner.invoke(main, ["status", "--config", str(path)])
    assert status.exit_code == 0, status.output
    blocks = {b.split()[0]: b for b in status.output.split("\n") if b and not b[0].isspace()}
    text = status.output
    assert "fine  fine  [enabled]" in text
    assert "gone  gone  [disabled: 410 Gone at" in text
    assert f"moved to: {server.url('/new-home.xml')}" in text
    assert "errors in a row: 2  last error: HTTP 404" in text
    assert "result: ok (HTTP 200)" in text
    assert "next poll: in " in text and "last poll: " in text and "entries: 1" in text
    assert text.strip().endswith("4 sources, 2 failing, 1 entries stored")
    assert len(blocks) >= 4

    as_json = json.loads(runner.invoke(main, ["status", "--json", "--config", str(path)]).output)
    rows = {row["id"]: row for row in as_json["sources"]}
    assert rows["broken"]["error_count"] == 2
    assert rows["gone"]["disabled_reason"].startswith("410 Gone")
    assert rows["moved"]["moved_to"] == server.url("/new-home.xml")
    assert rows["fine"]["entries"] == 1 and rows["fine"]["next_poll_at"]


class Rendezvous:
    """Answers only when `parties` requests are in flight together (or fails after 5 s):
    a pool of that size passes, a smaller one or a sequential loop breaks it."""

    def __init__(self, parties: int, body: bytes) -> None:
        self.barrier = threading.Barrier(parties, timeout=5)
        self.body = body
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.barrier.wait()
            status, body = 200, self.body
        except threading.BrokenBarrierError:
            status, body = 500, b"not concurrent"
        with self.lock:
            self.active -= 1
        handler.send_response(status)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def test_poll_runs_a_bounded_pool(server: FeedServer, write_config: Any) -> None:
    meeting = Rendezvous(3, rss([ITEM]))
    sources = [src(f"s{n}", server.set(f"/s{n}.xml", handler=meeting)) for n in range(6)]
    path = write_config(sources, workers=3)
    result = CliRunner().invoke(main, ["poll", "--all", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert meeting.max_active == 3  # three at once, never more
    lines = [line for line in result.output.splitlines() if line.startswith("s")]
    assert sorted(line.split(":")[0] for line in lines) == [f"s{n}" for n in range(6)]
    assert "polling" not in result.output  # no bar when not on a terminal


def test_progress_bar_only_on_a_terminal_with_many_sources(
    server: FeedServer, write_config: Any
) -> None:
    assert not wants_progress(False, 500)
    assert not wants_progress(True, 2)
    assert wants_progress(True, 5)
    sources = [src(f"s{n}", server.set(f"/s{n}.xml", rss([ITEM]))) for n in range(6)]
    path = write_config(sources)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "poll", "--all", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(follower)
    stdout, _ = process.communicate(timeout=30)
    terminal = b""
    try:
        while chunk := os.read(leader, 4096):
            terminal += chunk
    except OSError:  # EIO once the child has closed its side
        pass
    finally:
        os.close(leader)
    assert process.returncode == 0, stdout
    shown = terminal.decode("utf-8", "replace")
    assert "polling 6 sources" in shown and "6/6" in shown
    assert [line.split(":")[0] for line in stdout.splitlines()[:6]] == [f"s{n}" for n in range(6)]
