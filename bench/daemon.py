"""The daemon at scale: `aggregator run` with default settings, polling many sources of a
local server that answers every request late (bench.server), from an empty database.

    python -m bench.daemon --sources 50000 --hosts 50 --latency 0.25 --minutes 10

Every `--every` seconds it prints the feed requests the server has answered (each one a
poll), their rate over the interval, the daemon's CPU time over the interval (user +
system, as a share of one core) and its memory (RSS and PSS of the process and any
children); at the end one JSON line with the whole run. To keep N sources polled every
`--interval`, the daemon must sustain N / interval polls a second.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.runs import _descendants, _pss_kb, compiled_as_installed, write_config

ROOT = Path(__file__).resolve().parent.parent
AGGREGATOR = str(Path(sys.executable).parent / "aggregator")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def unpublished(database: Path) -> int:
    """Feeds a committed change has marked and no publish has written yet."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM feed_unpublished").fetchone()[0])
    except sqlite3.Error:
        return -1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answered(base: str) -> dict[str, int]:
    with urllib.request.urlopen(base + "/_stats", timeout=60) as response:
        counts: dict[str, int] = json.loads(response.read())
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.daemon")
    parser.add_argument("--sources", type=int, default=50_000)
    parser.add_argument("--entries", type=int, default=2, help="entries per feed")
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per answer")
    parser.add_argument("--interval", default="30m", help="every source's interval")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to watch")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between lines")
    args = parser.parse_args()
    compiled_as_installed()
    corpus = [str(args.sources), str(args.entries), "--hosts", str(args.hosts)]
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.server", *corpus, "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert server.stdout is not None and server.stdin is not None
    bases = json.loads(server.stdout.readline())["bases"]
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as name:
        folder = Path(name)
        config = write_config(folder, {"bases": bases, "feeds": args.sources})
        text = config.read_text(encoding="utf-8")
        text = text.replace("[settings]\n", f"[settings]\nport = {free_port()}\n", 1)
        text = text.replace("[[sources]]\n", f'[[sources]]\ninterval = "{args.interval}"\n')
        config.write_text(text, encoding="utf-8")
        subprocess.run([AGGREGATOR, "config", "check", "--config", str(config)], check=True)
        log = (folder / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [AGGREGATOR, "--log-level", "warning", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=folder,
        )
        started = time.monotonic()
        samples: list[dict[str, Any]] = []
        last_polls, last_cpu, last_time = 0, 0.0, started
        try:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.every)
                if daemon.poll() is not None:
                    raise SystemExit(f"the daemon stopped: {daemon.returncode}")
                pids = [daemon.pid, *_descendants(daemon.pid)]
                now, cpu = time.monotonic(), cpu_seconds(pids)
                counts = answered(bases[0])
                polls = sum(counts.values())
                sample = {
                    "seconds": round(now - started),
                    "polls": polls,
                    "by_status": counts,
                    "polls_per_s": round((polls - last_polls) / (now - last_time), 1),
                    "unpublished_feeds": unpublished(folder / "aggregator.db"),
                    "cpu_share": round((cpu - last_cpu) / (now - last_time), 2),
                    "rss_mb": round(rss_kb(pids) / 1024, 1),
                    "pss_mb": round(sum(_pss_kb(p) for p in pids) / 1024, 1),
                    "load": round(os.getloadavg()[0], 1),
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                last_polls, last_cpu, last_time = polls, cpu, now
        finally:
            stopping = time.monotonic()
            daemon.terminate()  # SIGTERM: running polls finish, the last publish is flushed
            daemon.wait(timeout=1800)
            stopped_in = time.monotonic() - stopping
            server.stdin.close()
            server.wait(timeout=60)
            log.close()
            errors = [
                line for line in (folder / "daemon.log").read_text().splitlines() if "ERROR" in line
            ]
    needed = args.sources / _seconds(args.interval)
    summary = {
        "sources": args.sources,
        "interval": args.interval,
        "needed_polls_per_s": round(needed, 1),
        "samples": samples,
        "stopped_in_s": round(stopped_in, 1),
        "errors_logged": len(errors),
        "first_errors": errors[:3],
    }
    print(json.dumps(summary), flush=True)
    return 0


def _seconds(interval: str) -> float:
    from aggregator.config.loader import parse_duration

    return float(parse_duration(interval))


if __name__ == "__main__":
    sys.exit(main())
