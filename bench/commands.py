"""Whole commands as a cron job runs them: start-up, publishing nothing, disk, memory.

    python -m bench.commands            # prints one JSON line per measurement
    python -m bench.commands --quick    # small sizes

Each command is the installed `aggregator` console script in a fresh process, timed
from its start to its exit, with its peak RSS (the kernel's ru_maxrss of the process;
the 1000-source first poll: the peak PSS of its process tree, sampled every 100 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.runs import TreeMemory, compiled_as_installed, write_config

ROOT = Path(__file__).resolve().parent.parent
AGGREGATOR = str(Path(sys.executable).parent / "aggregator")
RUNS = 7


def run(args: list[str], *, tree: bool = False) -> dict[str, float]:
    """One command: wall seconds, CPU seconds, its peak RSS in MB, and (tree) the peak
    PSS of its process tree."""
    started = time.perf_counter()
    with (
        tempfile.TemporaryFile() as output,  # a file, not a pipe: nobody reads it meanwhile
        subprocess.Popen([AGGREGATOR, *args], stdout=output, stderr=subprocess.PIPE) as process,
    ):
        if tree:
            with TreeMemory(process.pid) as memory:
                _, status, usage = os.wait4(process.pid, 0)
        else:
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        assert process.stderr is not None
        if process.returncode not in (0,):
            raise RuntimeError(f"{args} exited {process.returncode}: {process.stderr.read()!r}")
        output.seek(0)
        said = output.read().decode("utf-8", "replace")
    # CPU of the process and the children it waited for (its worker processes).
    cpu = usage.ru_utime + usage.ru_stime
    result = {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": usage.ru_maxrss / 1024}
    # `publish` says how long publishing itself took (the in-process figure).
    if found := re.search(r"published \d+ changed file\(s\) in ([\d.]+)s", said):
        result["in_process_seconds"] = float(found.group(1))
    if tree:
        result["peak_tree_pss_mb"] = memory.peak_kb / 1024
    return result


def repeated(args: list[str], runs: int = RUNS) -> dict[str, Any]:
    results = [run(args) for _ in range(runs)]
    seconds = [r["seconds"] for r in results]
    inside = [r["in_process_seconds"] for r in results if "in_process_seconds" in r]
    extra = {"in_process_seconds_median": round(statistics.median(inside), 3)} if inside else {}
    return {
        **extra,
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_min": round(min(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
        "runs": runs,
        "load": round(os.getloadavg()[0], 2),
    }


@contextmanager
def corpus_server(feeds: int, entries: int, latency: float = 0.0) -> Iterator[list[str]]:
    command = [sys.executable, "-m", "bench.server", str(feeds), str(entries), "--hosts", "50"]
    command += ["--latency", str(latency)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None and process.stdin is not None
        yield json.loads(process.stdout.readline())["bases"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=60)


def report(name: str, values: dict[str, Any]) -> None:
    print(json.dumps({"measure": name, **values}, ensure_ascii=False), flush=True)


def sample_config(folder: Path) -> Path:
    """The bundled config (two file: sources, Chinese names) pointed at a new folder."""
    shutil.copytree(ROOT / "config", folder / "config")
    path = folder / "config" / "sources.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('"data/aggregator.db"', f'"{folder / "aggregator.db"}"')
    text = text.replace('output_dir = "feeds"', f'output_dir = "{folder / "feeds"}"')
    path.write_text(text, encoding="utf-8")
    return path


def disk(database: Path) -> dict[str, Any]:
    """Bytes of database per stored entry, and the render cache's part of them."""
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries = db.execute("SELECT count(*) FROM entries").fetchone()[0]
        renders = db.execute(
            "SELECT coalesce(sum(length(pack) + length(code)), 0) FROM rendered_entries"
        ).fetchone()[0]
    size = database.stat().st_size
    return {
        "entries": entries,
        "database_bytes": size,
        "bytes_per_entry": round(size / max(entries, 1)),
        "render_cache_bytes": renders,
        "render_cache_share": round(renders / size, 2),
    }


def slow_hosts(folder: Path, feeds: int, entries: int) -> None:
    """`poll --all --no-publish` of sources on 50 hosts that answer in 250 ms: a first
    poll, then a second (all 304), with the default settings and, labelled, with the
    old default of 4 fetches in flight."""
    with corpus_server(feeds, entries, latency=0.25) as bases:
        for workers in (None, 4):
            fresh = folder / f"workers-{workers or 'default'}"
            fresh.mkdir(parents=True)
            config = write_config(fresh, {"bases": bases, "feeds": feeds})
            if workers:
                text = config.read_text(encoding="utf-8")
                setting = f"[settings]\nworkers = {workers}\n"
                config.write_text(text.replace("[settings]\n", setting))
            run(["config", "check", "--config", str(config)])
            poll = ["poll", "--all", "--no-publish", "--config", str(config)]
            label = f"workers = {workers}" if workers else "default settings"
            for which in ("first", "second (all 304)"):
                result = run(poll, tree=True)
                report(f"{which} poll, {feeds} sources on 50 hosts at 250 ms, {label}", result)
            with urllib.request.urlopen(bases[0] + "/_reset", timeout=120) as answer:
                answer.read()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    compiled_as_installed()
    feeds, entries = (40, 5) if args.quick else (1000, 20)
    runs = 2 if args.quick else RUNS
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as name:
        folder = Path(name)
        # Start-up: the two bundled sources, polled once, then nothing is due.
        config = str(sample_config(folder / "sample"))
        run(["poll", "--config", config])
        report("poll, nothing due, 2 sources", repeated(["poll", "--config", config], runs))
        report(
            "poll --no-publish, nothing due, 2 sources",
            repeated(["poll", "--no-publish", "--config", config], runs),
        )
        with corpus_server(feeds, entries) as bases:
            big = folder / "big"
            big.mkdir()
            config = str(write_config(big, {"bases": bases, "feeds": feeds}))
            # The first command on a new config, with Chinese names and no pinned slug:
            # it works the slugs out (jieba, pypinyin) and keeps them.
            first = run(["poll", "--all", "--no-publish", "--config", config], tree=True)
            report(f"first poll, {feeds} sources, slugs worked out", first)
            shutil.rmtree(big)
            big.mkdir()
            config = str(write_config(big, {"bases": bases, "feeds": feeds}))
            run(["config", "check", "--config", config])
            first = run(["poll", "--all", "--no-publish", "--config", config], tree=True)
            report(f"first poll, {feeds} sources, slugs kept", first)
        report(
            f"poll, nothing due, {feeds} sources",
            repeated(["poll", "--no-publish", "--config", config], runs),
        )
        full = run(["publish", "--config", config])
        files = sum(1 for p in (big / "feeds").rglob("*") if p.is_file())
        report(f"publish, everything, {feeds} × {entries}", {**full, "files": files})
        report(
            f"publish, nothing to publish, {feeds} × {entries}",
            repeated(["publish", "--config", config], runs),
        )
        report(
            f"poll, nothing due, then publish, {feeds} sources",
            repeated(["poll", "--config", config], runs),
        )
        report(f"disk, {feeds} × {entries}, after publishing", disk(big / "aggregator.db"))
        slow_hosts(folder / "slow", feeds, entries)
    report("when", {"utc": datetime.now(UTC).isoformat(timespec="minutes")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
