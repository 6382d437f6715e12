"""Soak: hundreds of sources changing while the real daemon polls them, for a long time.

    python -m tests.reliability.soak --minutes 30 [--sources 300] [--seed 1] [--keep DIR]

The daemon runs as a process with short intervals (seconds), its real
scheduler and thread pool. Meanwhile the sources publish new articles (some
on two or three sources at once), edit recent ones, drop old ones (each feed
lists only its newest articles, and some are removed outright), fail with
500s, answer 429 with Retry-After, serve an HTML maintenance page, and
recover. At the end the news stops, every source answers again, and once each
has been polled since, the daemon is stopped (SIGTERM) and checked:

- the store holds exactly the unique share codes the sources delivered;
- every entry shows the last version of it that was delivered, and that is
  the current one for everything still listed (every edit is reflected);
- no source was ever requested while a request for it was still running;
- its RSS, open file descriptors and threads did not grow after warm-up;
- PRAGMA integrity_check is ok and it exited 0.
It also reports how far apart each source's polls were against its interval.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.feedserver import FeedServer
from tests.reliability.kit import (
    CATEGORIES,
    TAGS,
    Article,
    DaemonProcess,
    Outlet,
    World,
    WorldFeeds,
    free_port,
    integrity,
    serve,
    stored_codes,
    stored_titles,
    write_config,
)

FAILURES = ("error", "throttle", "garbage")


@dataclass
class Sample:
    at: float  # seconds since the daemon started
    rss_kib: int
    fds: int
    threads: int
    entries: int


@dataclass
class SoakReport:
    sources: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    entries: int = 0
    poll_gap_ratio: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None

    def growth(self) -> dict[str, Any]:
        """Resources after warm-up (the first quarter) against the end."""
        if len(self.samples) < 4:
            return {}
        warm = self.samples[len(self.samples) // 4 :]
        first, last = warm[: max(1, len(warm) // 4)], warm[-max(1, len(warm) // 4) :]
        return {
            "rss_mib_after_warmup": round(statistics.median(s.rss_kib for s in first) / 1024, 1),
            "rss_mib_at_end": round(statistics.median(s.rss_kib for s in last) / 1024, 1),
            "rss_mib_max": round(max(s.rss_kib for s in self.samples) / 1024, 1),
            "fds_after_warmup": max(s.fds for s in first),
            "fds_at_end": max(s.fds for s in last),
            "fds_max": max(s.fds for s in self.samples),
            "threads_after_warmup": max(s.threads for s in first),
            "threads_max": max(s.threads for s in warm),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "seconds": round(self.seconds, 1),
            "problems": self.problems,
            "events": self.events,
            "requests": self.requests,
            "entries": self.entries,
            "resources": self.growth(),
            "poll_gap_to_interval": self.poll_gap_ratio,
            "exit_code": self.exit_code,
        }


def build_world(rng: random.Random, sources: int, intervals: tuple[float, ...]) -> World:
    world = World(rng, paragraphs=2, window=25)
    for number in range(sources):
        outlet = Outlet(
            f"w{number:03d}",
            "atom" if number % 2 else "rss",
            CATEGORIES[number % len(CATEGORIES)],
            tuple(rng.sample(TAGS, rng.randint(0, 2))),
            interval=rng.choice(intervals),
        )
        world.add_outlet(outlet)
        world.publish(outlet.id, rng.randint(3, 15))
    return world


class Newsroom(threading.Thread):
    """Changes the world a few times a second until stopped."""

    def __init__(self, world: World, rng: random.Random, failure_seconds: float) -> None:
        super().__init__(name="newsroom", daemon=True)
        self.world = world
        self.rng = rng
        self.failure_seconds = failure_seconds
        self.stopping = threading.Event()
        self.events: dict[str, int] = {}
        self.recover_at: dict[str, float] = {}

    def count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            self.step()

    def listed(self) -> list[str]:
        with self.world.lock:
            return sorted({c for o in self.world.outlets.values() for c in self.world.listed(o)})

    def step(self) -> None:
        rng, world = self.rng, self.world
        outlets = sorted(world.outlets)
        for code in world.publish(rng.choice(outlets), rng.randint(1, 2)):
            self.count("published")
            if rng.random() < 0.2:  # the same story on other sources, the same copy
                for other in rng.sample(outlets, rng.randint(1, 2)):
                    world.share(code, other)
                    self.count("shared")
        if rng.random() < 0.7:
            world.edit(rng.choice(self.listed()))
            self.count("edited")
        if rng.random() < 0.3:
            outlet = world.outlets[rng.choice(outlets)]
            if outlet.codes:
                world.remove(outlet.id, rng.choice(outlet.codes))
                self.count("removed")
        now = time.monotonic()
        for outlet_id, when in list(self.recover_at.items()):
            if when <= now:
                world.outlets[outlet_id].mode = "ok"
                del self.recover_at[outlet_id]
                self.count("recovered")
        if rng.random() < 0.15:
            outlet_id = rng.choice(outlets)
            if outlet_id not in self.recover_at:
                mode = rng.choice(FAILURES)
                world.outlets[outlet_id].mode = mode
                self.recover_at[outlet_id] = now + rng.uniform(0.3, 1.0) * self.failure_seconds
                self.count(f"failing:{mode}")

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        for outlet in self.world.outlets.values():
            outlet.mode = "ok"


def settle(daemon: DaemonProcess, world: World, feeds: WorldFeeds, timeout: float) -> list[str]:
    """Wait until every source has answered a poll with its feed since the news stopped."""
    since = time.monotonic()
    deadline = since + timeout
    pending = {o.path for o in world.outlets.values()}
    while pending and time.monotonic() < deadline:
        if not daemon.alive():
            return [f"the daemon died; see {daemon.log_path}"]
        for path in list(pending):
            last = feeds.last_answer(path)
            if last and last[0] > since and last[1] in (200, 304):
                pending.discard(path)
        time.sleep(0.2)
    return [f"{len(pending)} sources not polled within {timeout}s of the end"] if pending else []


def poll_gaps(feeds: WorldFeeds, world: World) -> dict[str, float]:
    """Time between a source's successive answered polls over its interval, while it
    answered 200 or 304 (backoff after failures is meant to stretch the gap)."""
    ratios = []
    for outlet in world.outlets.values():
        answers = feeds.answered.get(outlet.path, [])
        for (t0, s0), (t1, _) in itertools.pairwise(answers):
            if s0 in (200, 304):
                ratios.append((t1 - t0) / outlet.interval)
    if not ratios:
        return {}
    ratios.sort()
    return {
        "median": round(statistics.median(ratios), 3),
        "p05": round(ratios[len(ratios) // 20], 3),
        "p95": round(ratios[len(ratios) * 19 // 20], 3),
        "max": round(ratios[-1], 3),
        "polls": len(ratios),
    }


def check_store(database: Path, world: World, feeds: WorldFeeds) -> list[str]:
    problems = []
    codes = stored_codes(database)
    if len(codes) != len(set(codes)):
        problems.append("duplicate share codes in the store")
    served = dict(feeds.served)
    if set(codes) != set(served):
        problems.append(
            f"store has {len(set(codes) - set(served))} codes never served and lacks "
            f"{len(set(served) - set(codes))} served ones"
        )
    titles = stored_titles(database)
    stale = []
    for code, version in served.items():
        shown = Article(code, version, world.articles[code].published, 1).title
        if code in titles and titles[code] != shown:
            stale.append(f"{code}: stored {titles[code]!r}, last served {shown!r}")
    if stale:
        problems.append(f"{len(stale)} edits not reflected, e.g. {stale[:3]}")
    with world.lock:
        listed = {c for o in world.outlets.values() for c in world.listed(o)}
        behind = [c for c in listed if served.get(c) != world.articles[c].version]
    if behind:
        problems.append(f"{len(behind)} listed articles never delivered in their last version")
    return problems


def run(
    seconds: float,
    folder: Path,
    *,
    sources: int = 300,
    seed: int = 1,
    intervals: tuple[float, ...] = (5.0, 10.0, 15.0),
    sample_every: float = 5.0,
    log: Any = None,
) -> SoakReport:
    rng = random.Random(seed)
    report = SoakReport(sources=sources)
    world = build_world(rng, sources, intervals)
    feeds = WorldFeeds(world, delay=lambda: 0.0)
    server = FeedServer()
    feeds.install(server)
    serve(server)
    port = free_port()
    config = write_config(
        folder, world.outlets.values(), server.base, port, workers=4, publish_delay=1.0
    )
    database = folder / "data" / "aggregator.db"
    daemon = DaemonProcess(config, port, folder / "daemon.log")
    newsroom = Newsroom(world, rng, failure_seconds=2 * max(intervals))
    started = time.monotonic()
    daemon.start()
    try:
        daemon.wait_healthy(60)
        newsroom.start()
        while time.monotonic() - started < seconds:
            time.sleep(sample_every)
            sample = Sample(
                round(time.monotonic() - started, 1),
                daemon.rss_kib(),
                daemon.open_fds(),
                daemon.threads(),
                len(stored_codes(database)),
            )
            report.samples.append(sample)
            if log:
                print(json.dumps(sample.__dict__), file=log, flush=True)
        newsroom.stop()
        # Backoff after a failure episode is at most a few intervals.
        report.problems += settle(daemon, world, feeds, timeout=8 * max(intervals) + 30)
        time.sleep(2.5)  # the last polls' store writes and publish batch
        report.exit_code = daemon.stop(60)
    finally:
        if daemon.alive():
            daemon.kill()
        server.shutdown()
        server.server_close()
    report.seconds = time.monotonic() - started
    report.events = dict(sorted(newsroom.events.items()))
    report.requests = sum(feeds.requests.values())
    if report.exit_code != 0:
        report.problems.append(f"the daemon exited {report.exit_code} on SIGTERM")
    if feeds.overlaps:
        report.problems.append(f"overlapping polls of one source: {sorted(set(feeds.overlaps))}")
    verdict = integrity(database)
    if verdict != "ok":
        report.problems.append(f"integrity_check: {verdict}")
    report.problems += check_store(database, world, feeds)
    report.entries = len(stored_codes(database))
    report.poll_gap_ratio = poll_gaps(feeds, world)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--intervals", default="5,10,15", help="seconds, comma-separated")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = run(
        args.minutes * 60,
        folder,
        sources=args.sources,
        seed=args.seed,
        intervals=tuple(float(v) for v in args.intervals.split(",")),
        sample_every=max(5.0, args.minutes * 60 / 200),
        log=sys.stderr,
    )
    result = report.as_dict()
    result["samples"] = [s.__dict__ for s in report.samples]
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
