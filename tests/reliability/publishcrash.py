"""SIGKILL `aggregator` commands while they publish; one command later, the output folder
must be what a fresh publish of the same database writes.

    python -m tests.reliability.publishcrash --kills 40 [--sources 16] [--seed 1] [--keep DIR]

Each round the sources' news moves on (new articles, some carried by a second source,
edits), then a command that publishes runs as a real process: `poll --all`, `publish`,
`publish --rebuild`, `cleanup` (retention is set, so it removes entries) or the daemon,
`run`, which meanwhile polls the news still coming. (Before a command that does not
poll, `poll --all --no-publish` stores the news, so it has that to publish.) Once it
holds the output folder's lock (read from /proc/locks, so the harness never touches the
lock itself) it is killed with SIGKILL after a random part of the time that command took
to publish before. Then one other command runs to the end, `poll` (whatever is due),
`poll --all`, `publish`, `cleanup`, or `run` stopped with SIGTERM once healthy; after it
the output folder must hold, file for file, what publishing a copy of the database from
scratch writes (reader.compare_outputs), with no temp file left and every link resolving.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.feedserver import FeedServer
from tests.reliability.crash import change, rebuild
from tests.reliability.kit import (
    EN_CATEGORIES,
    EN_TAGS,
    DaemonProcess,
    Outlet,
    World,
    WorldFeeds,
    files_of,
    free_port,
    serve,
    temp_files,
    write_config,
)
from tests.reliability.reader import compare_outputs, dangling_links

BASE_URL = "http://feeds.example.org"
SETTINGS = {
    "feed_entries": 10,
    "archive_entries": 5,  # many archive pages: many files per publish
    "workers": 4,
    "publish_delay": 0.05,
    "retain_entries": 40,  # cleanup has entries to remove every round
}
KILLED = (("poll", "--all"), ("publish",), ("publish", "--rebuild"), ("cleanup",), ("run",))
AFTER = (("poll",), ("publish",), ("cleanup",), ("run",), ("poll", "--all"))
LOCK = ".publish.lock"  # aggregator.files.LOCK_NAME
TRIES = 10  # runs of one command that may finish before their kill, per round
POLLING = ("poll", "run")  # the other commands get the news stored for them first:
STORE_ONLY = ("poll", "--all", "--no-publish")


@dataclass
class Report:
    rounds: int = 0
    kills: int = 0
    finished_before_kill: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    pairs: Counter[str] = field(default_factory=Counter)
    temp_files_left_by_kills: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "kills": self.kills,
            "runs_that_finished_before_their_kill": self.finished_before_kill,
            "kill_moments": dict(self.moments),
            "killed_then_recovered_by": dict(self.pairs),
            "temp_files_left_by_kills": self.temp_files_left_by_kills,
            "published_files": self.files,
            "problems": self.problems,
            "seconds": round(self.seconds, 1),
        }


def holds_lock(pid: int, lock: Path) -> bool:
    """Whether process pid holds the flock on `lock` now (Linux: /proc/locks)."""
    try:
        inode = lock.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[4] == str(pid):  # noqa: SIM102
            if fields[5].rsplit(":", 1)[-1] == str(inode):  # device:inode
                return True
    return False


def build_world(rng: random.Random, sources: int) -> World:
    world = World(rng, paragraphs=2, window=50)
    for number in range(sources):
        outlet_id = f"p{number:02d}"
        tags = tuple(rng.sample(EN_TAGS, rng.randint(0, 2)))
        world.add_outlet(Outlet(outlet_id, "atom", EN_CATEGORIES[number % 4], tags, 1.0))
        world.publish(outlet_id, rng.randint(20, 45))
    return world


class Command(DaemonProcess):
    """One `python -m aggregator ...` process."""

    @property
    def daemon(self) -> bool:
        return self.command == ("run",)

    def run_to_end(self) -> int:
        """The command's exit code; the daemon is stopped (SIGTERM) once healthy."""
        self.start()
        if self.daemon:
            self.wait_healthy()
            time.sleep(0.5)  # a few polls and their publish
            return self.stop()
        return self.wait(120)


def kill_while_publishing(
    command: Command, lock: Path, estimate: float, rng: random.Random
) -> tuple[str, float]:
    """Start the command; once it holds the lock, SIGKILL it after a random part of
    `estimate`. Returns what it was doing when killed, or "" when a command that
    publishes once let the lock go first (then left to finish), with how long it held
    the lock. The daemon publishes again and again: it is killed whenever its time
    comes, publishing or not."""
    command.start()
    deadline = time.monotonic() + 120
    while not holds_lock(command.pid, lock):
        if not command.alive():
            command.wait(10)
            return "", 0.0
        if time.monotonic() > deadline:
            command.kill()
            raise RuntimeError(f"{command.command} never took the lock; see {command.log_path}")
        time.sleep(0.001)
    locked = time.monotonic()
    kill_at = locked + rng.uniform(0, estimate)
    while time.monotonic() < kill_at:
        if not command.daemon and not holds_lock(command.pid, lock):
            held = time.monotonic() - locked
            command.wait(120)
            return "", held
        time.sleep(0.001)
    doing = "publishing" if holds_lock(command.pid, lock) else "between publishes"
    if temp_files(lock.parent):
        doing += "+file-write"
    command.kill()
    return doing, time.monotonic() - locked


def run(
    kills: int,
    folder: Path,
    *,
    sources: int = 16,
    seed: int = 1,
    log: Any = None,
) -> Report:
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    world = build_world(rng, sources)
    feeds = WorldFeeds(world)
    server = FeedServer()
    feeds.install(server)
    serve(server)
    port = free_port()
    work = folder / "site"
    config = write_config(work, world.outlets.values(), server.base, port, **SETTINGS)
    output = work / "feeds"
    lock = output / LOCK
    estimates = {args: 1.0 for args in KILLED}  # seconds a publish of each took

    def newsroom(stop: threading.Event) -> None:
        while not stop.wait(0.1):
            change(world, rng)

    try:
        first = Command(config, port, work / "commands.log", ("poll", "--all")).run_to_end()
        if first != 0:
            raise RuntimeError(f"the first poll exited {first}; see {work / 'commands.log'}")
        for number in range(kills):
            killed = KILLED[number % len(KILLED)]
            after = AFTER[(number + number // len(KILLED)) % len(AFTER)]
            doing = ""
            for _ in range(TRIES):
                change(world, rng)
                if killed[0] not in POLLING:  # the news stored, left for it to publish
                    store_only = Command(config, port, work / "commands.log", STORE_ONLY)
                    if store_only.run_to_end() != 0:
                        report.problems.append(f"round {number}: poll --no-publish failed")
                command = Command(config, port, work / "commands.log", killed)
                stop = threading.Event()
                if command.daemon:  # news while it runs: it polls and publishes again
                    threading.Thread(target=newsroom, args=(stop,), daemon=True).start()
                try:
                    doing, held = kill_while_publishing(command, lock, estimates[killed], rng)
                finally:
                    stop.set()
                if doing:
                    break
                report.finished_before_kill += 1
                estimates[killed] = max(held, 0.02)
            report.rounds += 1
            if not doing:
                report.problems.append(f"round {number}: {killed} always finished first")
                continue
            report.kills += 1
            report.moments[f"{' '.join(killed)}: {doing}"] += 1
            report.temp_files_left_by_kills += len(temp_files(output))
            code = Command(config, port, work / "commands.log", after).run_to_end()
            report.pairs[f"{' '.join(killed)} -> {' '.join(after)}"] += 1
            if code != 0:
                report.problems.append(f"round {number}: {after} exited {code}")
            problems = check(config, output, folder)
            report.problems += [f"round {number} ({killed} -> {after}): {p}" for p in problems]
            if log:
                print(
                    f"round {number + 1}/{kills}: killed {' '.join(killed)} ({doing}), "
                    f"then {' '.join(after)}: {len(problems)} problem(s)",
                    file=log,
                    flush=True,
                )
    finally:
        server.shutdown()
        server.server_close()
    report.files = len(files_of(output))
    report.seconds = time.monotonic() - started
    return report


def check(config: Path, output: Path, folder: Path) -> list[str]:
    """The output folder against a fresh publish of a copy of the database."""
    published = files_of(output)
    problems = compare_outputs(published, rebuild(config, folder))[:20]
    problems += dangling_links(published, BASE_URL)[:5]
    left = temp_files(output)
    if left:
        problems.append(f"{len(left)} temp file(s) left, e.g. {left[0].name}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--sources", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="publishcrash-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = run(args.kills, folder, sources=args.sources, seed=args.seed, log=sys.stderr)
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
