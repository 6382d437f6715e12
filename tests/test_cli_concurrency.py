""" "Database is locked" never reaches a user: CLI commands while the daemon writes.

The daemon runs as a process, polling sources whose feeds change all the time
(every poll a store transaction, every batch a publish); meanwhile `status`,
`sources list` and `publish` run as processes, several at once. All succeed.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.feedserver import FeedServer
from tests.reliability.kit import (
    EN_CATEGORIES,
    ROOT,
    DaemonProcess,
    Outlet,
    World,
    WorldFeeds,
    free_port,
    serve,
    stored_codes,
    write_config,
)

COMMANDS = (["status"], ["sources", "list"], ["publish"], ["status", "--json"])


def cli(config: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.reliability
def test_status_list_and_publish_succeed_while_the_daemon_writes(tmp_path: Path) -> None:
    rng = random.Random(5)
    world = World(rng, paragraphs=6)
    for number in range(12):
        world.add_outlet(Outlet(f"c{number}", "atom", EN_CATEGORIES[number % 4], ("t",), 0.3))
        world.publish(f"c{number}", 20)
    feeds = WorldFeeds(world)
    server = FeedServer()
    feeds.install(server)
    serve(server)
    port = free_port()
    config = write_config(tmp_path, world.outlets.values(), server.base, port, publish_delay=0.05)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    stop = threading.Event()

    def newsroom() -> None:  # keeps every poll writing
        while not stop.wait(0.05):
            outlet = rng.choice(sorted(world.outlets))
            world.publish(outlet)
            world.edit(rng.choice(world.outlets[outlet].codes))

    changer = threading.Thread(target=newsroom, daemon=True)
    daemon.start()
    try:
        daemon.wait_healthy()
        changer.start()
        before = len(stored_codes(tmp_path / "data" / "aggregator.db"))
        with ThreadPoolExecutor(max_workers=3) as pool:
            runs = list(pool.map(lambda args: cli(config, args), COMMANDS * 2))
        time.sleep(0.5)
        after = len(stored_codes(tmp_path / "data" / "aggregator.db"))
    finally:
        stop.set()
        daemon.stop()
        server.shutdown()
        server.server_close()
    for run in runs:
        assert run.returncode == 0, f"{run.args[3:]}: {run.stderr}"
        assert "locked" not in run.stderr.lower()
    assert after > before  # the daemon was writing all along
