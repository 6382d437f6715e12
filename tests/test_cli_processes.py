"""`aggregator poll` on a large config spreads the sources over worker processes
(multiprocessing spawn): run as a real command, every source is polled once and
stored as it would be in one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from aggregator.run.pollrun import PROCESS_MIN_SOURCES
from aggregator.store.sqlite import SqliteStore
from tests.feeds import Item, rss


def test_a_large_poll_runs_in_worker_processes(tmp_path: Path, write_config: Any) -> None:
    count = PROCESS_MIN_SOURCES + 10
    sources = []
    for n in range(count):
        path = tmp_path / "feeds" / f"{n}.xml"
        path.parent.mkdir(exist_ok=True)
        # Every feed carries its own article and the shared one (a cross-source duplicate).
        items = [Item(f"NW{n:018d}", f"第{n}版头条"), Item("NW202112242224484383", "共同报道")]
        path.write_bytes(rss(items))
        sources.append(
            {
                "id": f"s{n:03d}",
                "name": f"第{n}版",
                "url": path.as_uri(),
                "category": "三秦都市报",
                "share_code": {"param": "infoCode"},
            }
        )
    config = write_config(sources, workers=8)
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "poll", "--all", "--no-publish", "--config", config],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("s")]
    assert sorted(line.split(":")[0] for line in lines) == [f"s{n:03d}" for n in range(count)]
    with SqliteStore(tmp_path / "project" / "data" / "test.db") as store:
        assert store.entry_count() == count + 1  # the shared article once
        assert len(store.entry_sources("NW202112242224484383")) == count
