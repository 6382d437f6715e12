"""Nodes of a cluster on one PostgreSQL, measured: ``python -m bench.cluster``.

Real `aggregator run` processes (1, 2 and 4 nodes against one PostgreSQL database, and
one node on an SQLite file for comparison) poll SOURCES feeds served by bench/server.py
from many loopback hosts with 200 ms ± 100 ms latency; 20% of the feeds get a new entry
every interval. Each configuration starts from an empty database and the same corpus:

- start: until every node answers /healthz with 200;
- first wave: until every source has been polled once (bounded by --warmup);
- a window of --window seconds: polls per second (feed requests the server answered),
  CPU per poll (user+system time of the nodes' process trees over those polls), and
  the database size per stored entry at its end;
- with 2 nodes or more: one node SIGKILLed, and the time until the polls it had in
  flight are polled again by the others (each such source's last_poll_at after the kill).

It prints a Markdown table (and the raw figures as JSON lines on stderr). The nodes run
with the shipped settings (workers, per_host_limit) unless --workers is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.runs import _descendants

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("AGGREGATOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    backend: str
    nodes: int
    sources: int
    start_s: float = 0.0
    first_wave_s: float | None = None  # None: not done within --warmup
    polled_at_window: int = 0  # sources polled at least once when the window opened
    polls: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0
    entries: int = 0
    database_bytes: int = 0
    recovery_s: list[float] = field(default_factory=list)
    killed_in_flight: int = 0
    killed_done: int = 0  # its polls done, not yet acknowledged: next polls queued already
    exited: list[int] = field(default_factory=list)  # exit codes of nodes that died alone

    @property
    def polls_per_s(self) -> float:
        return self.polls / self.window_s if self.window_s else 0.0

    @property
    def cpu_ms_per_poll(self) -> float:
        return 1000 * self.cpu_s / self.polls if self.polls else 0.0

    @property
    def bytes_per_entry(self) -> float:
        return self.database_bytes / self.entries if self.entries else 0.0


# --- the feed server ------------------------------------------------------------------


@contextlib.contextmanager
def feed_server(args: argparse.Namespace) -> Iterator[list[str]]:
    command = [sys.executable, "-m", "bench.server", str(args.sources), str(args.entries)]
    command += ["--hosts", str(args.hosts), "--latency", "0.2", "--spread", "0.1", "--no-ttl"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["bases"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=60)


def control(bases: list[str], path: str) -> bytes:
    with urllib.request.urlopen(bases[0] + path, timeout=300) as response:
        body: bytes = response.read()
        return body


def served(bases: list[str]) -> int:
    return sum(json.loads(control(bases, "/_stats")).values())


class Churn:
    """A new entry in 20% of the feeds every interval, a different fifth each time."""

    def __init__(self, bases: list[str], sources: int, interval: float) -> None:
        self.bases, self.sources, self.interval = bases, sources, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        share, start = self.sources // 5, 0
        while not self.stop.wait(self.interval):
            control(self.bases, f"/_churn?n={share}&start={start}")
            start = (start + share) % self.sources

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# --- the database ---------------------------------------------------------------------


class Database:
    """A fresh database for one configuration: a PostgreSQL database, or an SQLite file."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend = backend
        self.name = f"aggregator_bench_{secrets.token_hex(4)}"
        self.path = folder / "aggregator.db"

    @property
    def url(self) -> str:
        if self.backend == "sqlite":
            return str(self.path)
        return SERVER.rpartition("/")[0] + "/" + self.name

    def __enter__(self) -> Database:
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(SERVER, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(SERVER, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            if not self.path.exists():
                return []
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql.encode(), params).fetchall()  # type: ignore[arg-type]

    def polled_sources(self) -> int:
        try:
            return int(
                self.query("SELECT count(*) FROM sources WHERE last_poll_at IS NOT NULL")[0][0]
            )
        except Exception:  # not made yet
            return 0

    def entries(self) -> int:
        return int(self.query("SELECT count(*) FROM entries")[0][0])

    def size(self) -> int:
        if self.backend == "sqlite":
            return sum(p.stat().st_size for p in self.path.parent.glob("aggregator.db*"))
        return int(self.query("SELECT pg_database_size(current_database())")[0][0])


# --- the nodes ------------------------------------------------------------------------


def write_config(path: Path, database: str, bases: list[str], args: argparse.Namespace) -> None:
    lines = ["[settings]", f'database = "{database}"', 'base_url = "http://feeds.example.org"']
    if args.workers:
        lines.append(f"workers = {args.workers}")
    for n in range(args.sources):
        base = bases[n % len(bases)]
        lines += [
            "",
            "[[sources]]",
            f'id = "f{n}"',
            f'name = "feed {n}"',
            f'url = "{base}/feeds/{n:05d}.xml"',
            'category = "bench"',
            f'interval = "{args.interval}s"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    port: int


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_node(config: Path, folder: Path) -> Node:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AGGREGATOR_OUTPUT_DIR": str(folder),
        "AGGREGATOR_PORT": str(port),
    }
    log = (folder.parent / f"{folder.name}.log").open("wb")
    command = [sys.executable, "-m", "aggregator", "run", "--config", str(config)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return Node(process, port)


def healthy(node: Node) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/healthz", timeout=5) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def cpu_seconds(nodes: list[Node]) -> float:
    """User+system time of the nodes' processes and their children so far."""
    total = 0
    for node in nodes:
        for pid in [node.process.pid, *_descendants(node.process.pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


def stop(nodes: list[Node]) -> None:
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


def wait(condition: Any, timeout: float, every: float = 1.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())


# --- one configuration ----------------------------------------------------------------


def measure(backend: str, count: int, bases: list[str], args: argparse.Namespace) -> Result:
    result = Result(backend, count, args.sources)
    control(bases, "/_reset")
    with (
        tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp,
        Database(backend, Path(tmp)) as database,
    ):
        folder = Path(tmp)
        config = folder / "sources.toml"
        write_config(config, database.url, bases, args)
        began = time.monotonic()
        nodes = [start_node(config, folder / f"node{i}") for i in range(count)]
        try:
            if not wait(lambda: all(healthy(n) for n in nodes), args.warmup):
                raise RuntimeError(f"{backend} x{count}: nodes not healthy; see {folder}/*.log")
            result.start_s = time.monotonic() - began
            with Churn(bases, args.sources, args.interval):
                began = time.monotonic()
                if wait(lambda: database.polled_sources() >= args.sources, args.warmup, 2.0):
                    result.first_wave_s = time.monotonic() - began
                result.polled_at_window = database.polled_sources()
                requests, cpu, opened = served(bases), cpu_seconds(nodes), time.monotonic()
                time.sleep(args.window)
                result.polls = served(bases) - requests
                result.cpu_s = cpu_seconds(nodes) - cpu
                result.window_s = time.monotonic() - opened
                result.entries = database.entries()
                result.database_bytes = database.size()
                result.exited = [c for n in nodes if (c := n.process.poll()) is not None]
                if count > 1 and backend == "postgresql" and not args.no_kill:
                    kill_one(nodes, database, result)
        finally:
            stop(nodes)
            lost = len(result.recovery_s) < result.killed_in_flight
            if (result.exited or lost) and args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                for log in folder.glob("node*.log"):
                    shutil.copy(log, keep / f"{backend}-{count}-{log.name}")
    return result


def kill_one(nodes: list[Node], database: Database, result: Result) -> None:
    """SIGKILL the last node; time until the sources it was polling are polled again."""
    victim = nodes[-1]
    victim.process.send_signal(signal.SIGKILL)
    killed = time.time()
    doing = database.query(
        "SELECT queueing_lock, worker_id FROM procrastinate_jobs WHERE status = 'doing'"
    )
    # A job still 'doing' whose source already has its next poll queued had finished its
    # poll; only telling procrastinate so was left (recovery drops such a job).
    queued = {
        lock
        for (lock,) in database.query(
            "SELECT queueing_lock FROM procrastinate_jobs WHERE status = 'todo'"
        )
    }
    time.sleep(6)  # the others beat every 2 s; the dead one's last beat is before the kill
    beats = dict(database.query("SELECT id, last_heartbeat FROM procrastinate_workers"))
    dead = {w for _, w in doing if w in beats and beats[w].timestamp() < killed}
    mine = [lock for lock, w in doing if w in dead]
    sources = [lock for lock in mine if lock not in queued]
    result.killed_in_flight = len(sources)
    result.killed_done = len(mine) - len(sources)

    def polled_since() -> dict[str, float]:
        rows = database.query("SELECT id, last_poll_at FROM sources WHERE id = ANY(%s)", (sources,))
        times = {i: datetime.fromisoformat(t).timestamp() for i, t in rows if t}
        return {i: t - killed for i, t in times.items() if t > killed}

    wait(lambda: len(polled_since()) == len(sources), 120)
    result.recovery_s = sorted(polled_since().values())


# --- the report -----------------------------------------------------------------------


def row(result: Result) -> str:
    name = "SQLite" if result.backend == "sqlite" else "PostgreSQL"
    wave = (
        f"{result.first_wave_s:.0f} s"
        if result.first_wave_s is not None
        else (f"not done ({result.polled_at_window:,} of {result.sources:,} polled)")
    )
    recovery = "–"
    if result.recovery_s:
        recovery = (
            f"{max(result.recovery_s):.1f} s (median {statistics.median(result.recovery_s):.1f} s,"
            f" {len(result.recovery_s)} of {result.killed_in_flight} polls in flight)"
        )
        if result.killed_done:
            recovery += f"; {result.killed_done} more done, next polls already queued"
    elif result.killed_in_flight:
        recovery = f"not within 120 s ({result.killed_in_flight} polls in flight)"
    if result.exited:
        recovery += f" ({len(result.exited)} node(s) exited by themselves: {result.exited})"
    return (
        f"| {result.nodes} × {name} | {result.start_s:.0f} s | {wave} | "
        f"{result.polls_per_s:.1f} | {result.cpu_ms_per_poll:.1f} ms | "
        f"{result.bytes_per_entry / 1024:.1f} KB ({result.entries:,} entries) | {recovery} |"
    )


HEADER = [
    "| nodes × store | start (until /healthz 200) | first wave (every source polled once) "
    "| polls/s in the window | CPU per poll (nodes) | database size per entry "
    "| killed node's polls polled again (max) |",
    "|---|---|---|---|---|---|---|",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--entries", type=int, default=5, help="entries per feed at first")
    parser.add_argument("--hosts", type=int, default=100, help="loopback hosts serving them")
    parser.add_argument("--interval", type=int, default=60, help="each source's, in seconds")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=600.0, help="at most, seconds")
    parser.add_argument("--nodes", default="1,2,4", help="PostgreSQL node counts")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--workers", type=int, default=0, help="0: the shipped default")
    parser.add_argument("--keep-logs", default="", help="a folder for the logs of nodes that died")
    args = parser.parse_args()
    runs = [] if args.no_sqlite else [("sqlite", 1)]
    runs += [("postgresql", int(n)) for n in args.nodes.split(",")]
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines = list(HEADER)
    with feed_server(args) as bases:
        for backend, count in runs:
            result = measure(backend, count, bases, args)
            print(
                json.dumps({**result.__dict__, "polls_per_s": result.polls_per_s}), file=sys.stderr
            )
            lines.append(row(result))
            print(lines[-1], flush=True)
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
