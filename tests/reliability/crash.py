"""Crash harness: SIGKILL the daemon at random moments, restart it, lose nothing.

    python -m tests.reliability.crash --kills 100 [--sources 40] [--seed 1] [--keep DIR]

Runs `python -m aggregator run` against a local source server whose feeds
change between and during runs (new articles, articles carried by several
sources, edits). Each run is killed with SIGKILL after a random delay: while
it starts and publishes everything, while it fetches (the server answers
slowly), while it writes its store transaction (large feeds), while it
writes files. Throughout, a reader polls the published files.

Checked after every kill: every share code the database held just before the
kill is still there, once; every (code, source) link too. At the end: PRAGMA
integrity_check is ok; the reader never saw a missing or broken document; a
last clean run holds exactly the store an uninterrupted run builds from the
same feeds (every field that does not depend on arrival order or time), with
gap-free feed positions; its output folder is byte for byte what publishing
that store from scratch writes, with no file more or less.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.feedserver import FeedServer
from tests.reliability.kit import (
    CATEGORIES,
    EN_CATEGORIES,
    EN_TAGS,
    ROOT,
    TAGS,
    DaemonProcess,
    Outlet,
    World,
    WorldFeeds,
    files_of,
    free_port,
    integrity,
    positions_are_contiguous,
    serve,
    store_fingerprint,
    stored_codes,
    stored_links,
    temp_files,
    write_config,
)
from tests.reliability.reader import OutputReader, compare_outputs, dangling_links

BASE_URL = "http://feeds.example.org"
SETTINGS = {"feed_entries": 20, "archive_entries": 10, "workers": 4, "publish_delay": 0.1}


@dataclass
class Report:
    kills: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    files: int = 0
    reader_reads: int = 0
    reader_passes: int = 0
    temp_files_left: int = 0
    seconds: float = 0.0
    integrity: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "kill_moments": dict(self.phases),
            "problems": self.problems,
            "entries": self.entries,
            "published_files": self.files,
            "reader_reads": self.reader_reads,
            "reader_passes": self.reader_passes,
            "temp_files_left_by_kills": self.temp_files_left,  # each start removes them
            "integrity_check": self.integrity,
            "seconds": round(self.seconds, 1),
        }


def build_world(rng: random.Random, sources: int, names: str = "zh") -> World:
    """names "en": ASCII categories and tags, so the daemon starts without loading the
    Chinese word segmenter (about a second), for the short CI form."""
    categories, tags = (CATEGORIES, TAGS) if names == "zh" else (EN_CATEGORIES, EN_TAGS)
    world = World(rng, paragraphs=12)
    for number in range(sources):
        world.add_outlet(
            Outlet(
                f"s{number:03d}",
                "atom",
                categories[number % len(categories)],
                tuple(rng.sample(tags, rng.randint(0, 2))),
                interval=rng.choice([0.5, 1.0, 2.0]),
            )
        )
        # A quarter are big feeds (a long store transaction, many archive pages).
        world.publish(f"s{number:03d}", rng.randint(100, 200) if number % 4 == 0 else 10)
    return world


def change(world: World, rng: random.Random) -> None:
    """One step of news: new articles, some carried by a second source, some edits."""
    outlets = list(world.outlets)
    for outlet_id in rng.sample(outlets, max(1, len(outlets) // 5)):
        for code in world.publish(outlet_id, rng.randint(1, 2)):
            if rng.random() < 0.3:
                world.share(code, rng.choice(outlets))
    for code in rng.sample(sorted(world.articles), min(5, len(world.articles))):
        world.edit(code)


def moment(feeds: WorldFeeds, database: Path, output: Path) -> str:
    """What the daemon is doing right now, as far as the outside can tell."""
    doing = []
    with feeds.lock:
        if any(feeds.active.values()):
            doing.append("fetch")
    if database.exists():
        conn = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            doing.append("store-transaction")
        finally:
            conn.close()
    if temp_files(output):
        doing.append("file-write")
    return "+".join(doing) or "parse, render or wait"


def settle(daemon: DaemonProcess, world: World, feeds: WorldFeeds, database: Path) -> None:
    """Wait until every source was polled after the last change and all of it is stored."""
    since = time.monotonic()
    wanted = set(world.articles)
    deadline = since + 120
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"the daemon died; see {daemon.log_path}")
        answered = all(
            (last := feeds.last_answer(o.path)) is not None and last[0] > since
            for o in world.outlets.values()
        )
        if answered and wanted <= set(stored_codes(database)):
            time.sleep(1.5)  # the publish batch after the last poll
            return
        time.sleep(0.1)
    raise RuntimeError("the daemon never caught up with the sources")


def reference_run(world: World, folder: Path, server: FeedServer, feeds: WorldFeeds) -> Path:
    """An uninterrupted daemon over the final feeds, from an empty store."""
    port = free_port()
    config = write_config(folder, world.outlets.values(), server.base, port, **SETTINGS)
    daemon = DaemonProcess(config, port, folder / "daemon.log")
    daemon.start()
    daemon.wait_healthy()
    settle(daemon, world, feeds, folder / "data" / "aggregator.db")
    code = daemon.stop()
    if code != 0:
        raise RuntimeError(f"reference daemon exited {code}")
    return folder / "data" / "aggregator.db"


def rebuild(config: Path, folder: Path) -> dict[str, bytes]:
    """What publishing the store from scratch writes, in an empty folder."""
    copy = folder / "rebuild"
    shutil.rmtree(copy, ignore_errors=True)
    text = config.read_text(encoding="utf-8").replace(
        str(config.parent / "feeds"), str(copy / "feeds")
    )
    text = text.replace(str(config.parent / "data"), str(copy / "data"))
    (copy / "data").mkdir(parents=True)
    with (
        closing(sqlite3.connect(config.parent / "data" / "aggregator.db")) as source,
        closing(sqlite3.connect(copy / "data" / "aggregator.db")) as target,
    ):
        source.backup(target)  # the database with its WAL, as one consistent copy
    (copy / "sources.toml").write_text(text, encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "aggregator",
            "--log-level",
            "warning",
            "publish",
            "--config",
            str(copy / "sources.toml"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return files_of(copy / "feeds")


def run(
    kills: int,
    folder: Path,
    *,
    sources: int = 40,
    seed: int = 1,
    max_delay: float = 3.0,
    names: str = "zh",
    log: Any = None,
) -> Report:
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    world = build_world(rng, sources, names)
    feeds = WorldFeeds(world, delay=lambda: rng.choice([0.0, 0.0, 0.05, 0.2]))
    server = FeedServer()
    feeds.install(server)
    serve(server)
    port = free_port()
    crash = folder / "crash"
    config = write_config(crash, world.outlets.values(), server.base, port, **SETTINGS)
    database, output = crash / "data" / "aggregator.db", crash / "feeds"
    reader = OutputReader(output, BASE_URL)
    reader.start()
    daemon = DaemonProcess(config, port, crash / "daemon.log")
    try:
        for number in range(kills):
            change(world, rng)
            daemon.start()
            starting = rng.random() < 0.2
            if starting:  # while it starts: opens the store, publishes everything
                deadline = time.monotonic() + rng.uniform(0.2, 1.5)
            else:
                daemon.wait_healthy()
                deadline = time.monotonic() + rng.uniform(0.0, max_delay)
            while time.monotonic() < deadline:  # the news keeps coming while it runs
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                if rng.random() < 0.05:
                    change(world, rng)
            if not daemon.alive():
                raise RuntimeError(f"the daemon exited by itself; see {daemon.log_path}")
            before_codes = set(stored_codes(database))
            before_links = stored_links(database)
            doing = moment(feeds, database, output)
            report.phases[f"starting: {doing}" if starting else doing] += 1
            daemon.kill()
            report.kills += 1
            report.temp_files_left += len(temp_files(output))
            after = stored_codes(database)
            lost = before_codes - set(after)
            if lost:
                report.problems.append(f"kill {number}: committed codes lost: {sorted(lost)[:5]}")
            if len(after) != len(set(after)):
                report.problems.append(f"kill {number}: duplicate codes")
            if before_links - stored_links(database):
                report.problems.append(f"kill {number}: committed source links lost")
            if log:
                print(
                    f"kill {number + 1}/{kills}: {len(after)} entries, "
                    f"{len(reader.seen)} files, killed during: {doing}",
                    file=log,
                    flush=True,
                )
        # The last, clean run: it must catch up and stop cleanly.
        daemon.start()
        daemon.wait_healthy()
        settle(daemon, world, feeds, database)
        code = daemon.stop()
        if code != 0:
            report.problems.append(f"the last clean run exited {code}")
    finally:
        if daemon.alive():
            daemon.kill()
        reader.stop()
    report.problems += sorted(set(reader.problems))
    report.reader_reads, report.reader_passes = reader.reads, reader.passes
    report.integrity = integrity(database)
    if report.integrity != "ok":
        report.problems.append(f"integrity_check: {report.integrity}")
    codes = stored_codes(database)
    report.entries = len(codes)
    if len(codes) != len(set(codes)):
        report.problems.append("duplicate share codes in the final store")
    if set(codes) != set(world.articles):
        missing = set(world.articles) - set(codes)
        report.problems.append(f"final store lacks {len(missing)} served articles")
    report.problems += positions_are_contiguous(database)
    reference = reference_run(world, folder / "reference", server, feeds)
    if store_fingerprint(database) != store_fingerprint(reference):
        report.problems.append("the store differs from an uninterrupted run's")
    if temp_files(output):
        report.problems.append(f"{len(temp_files(output))} temp files left after a clean run")
    published = files_of(output)
    report.files = len(published)
    report.problems += dangling_links(published, BASE_URL)
    report.problems += compare_outputs(published, rebuild(config, folder))[:20]
    server.shutdown()
    server.server_close()
    report.seconds = time.monotonic() - started
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--sources", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=3.0, help="longest run before a kill")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="crash-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = run(
        args.kills,
        folder,
        sources=args.sources,
        seed=args.seed,
        max_delay=args.max_delay,
        log=sys.stderr,
    )
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
