"""Benchmarks: aggregator against lemon24/reader 3.26 on the same synthetic feeds.

    python -m bench                 # the full table, results into BENCHMARKS.md
    python -m bench --quick         # small sizes, one run each (a smoke test)
    python -m bench --no-reader     # our side only
    (python3 dev.py bench / make bench install the extras first)

For each row a corpus server (bench.server) starts in its own process; then our
real poll path and reader run in alternation, each run in a fresh process
(bench.runs), several runs each. Medians are printed with min-max and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.runs import TreeMemory

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    name: str
    scenario: str
    feeds: int
    entries: int
    unit: str  # "entries/s", "feeds/s", "ms", "MB"
    hosts: int = 1
    latency: float = 0.0
    ours: dict[str, Any] = field(default_factory=dict)  # params for our side
    reader: dict[str, Any] = field(default_factory=dict)
    runs: int = 3
    show_peak: bool = False  # add a peak-RSS row
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def rows(quick: bool, runs: int) -> list[Row]:
    big, small, mid = (1000, 20, 50) if not quick else (40, 5, 10)
    many_feeds = 200 if not quick else 20
    # Our side runs with the default `workers` setting: 4 fetches in flight. Only the
    # 50 ms row needs many more.
    fast = {"workers": 4}
    wide = {"workers": 4}
    return [
        Row(
            f"first poll, {many_feeds} feeds × {mid} entries",
            "first",
            many_feeds,
            mid,
            "entries/s",
            hosts=4,
            ours=fast,
            reader={"workers": 8},
            runs=runs,
        ),
        Row(
            f"first poll, {big} feeds × {small} entries",
            "first",
            big,
            small,
            "entries/s",
            hosts=4,
            ours=fast,
            reader={"workers": 8},
            runs=runs,
            show_peak=True,
        ),
        Row(
            f"second poll, all 304, {big} feeds",
            "second",
            big,
            small,
            "feeds/s",
            hosts=8,
            ours=wide,
            reader={"workers": 8},
            runs=runs,
        ),
        Row(
            f"second poll, all 304, {big // 2} feeds, 50 ms latency",
            "second",
            big // 2,
            small,
            "feeds/s",
            hosts=32,
            latency=0.05,
            ours={"workers": 128},
            reader={"workers": 8},
            runs=runs,
        ),
        Row(
            f"one changed feed, 1 new entry of {mid + 1}",
            "changed",
            many_feeds,
            mid,
            "ms",
            hosts=4,
            ours=fast,
            reader={"workers": 8},
            runs=runs,
        ),
        Row(
            f"RSS over 10 cycles, {big} feeds (10% change per cycle)",
            "cycles",
            big,
            small,
            "MB",
            hosts=8,
            # One long-lived process, as the daemon polls: its memory must stay flat.
            ours={"workers": 16, "cycles": 10 if not quick else 3, "processes": 1},
            reader={"workers": 8, "cycles": 10 if not quick else 3},
            runs=1,
        ),
    ]


@contextmanager
def corpus_server(row: Row) -> Iterator[list[str]]:
    command = [sys.executable, "-m", "bench.server", str(row.feeds), str(row.entries)]
    command += ["--hosts", str(row.hosts), "--latency", str(row.latency)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield ready["bases"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def run_once(side: str, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "READER_NO_VENDORED_FEEDPARSER": "1"}
    # Every run starts with no dirty pages left by the run before (the other side's
    # database): their writeback would otherwise land in this run's fsyncs.
    os.sync()
    command = [sys.executable, "-m", "bench.runs", side, scenario, json.dumps(params)]
    with (
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as run,
        TreeMemory(run.pid) as memory,
    ):
        stdout, stderr = run.communicate()
    if run.returncode != 0:
        raise RuntimeError(f"{side} {scenario} failed:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_tree_pss_mb"] = round(memory.peak_kb / 1024, 1)
    return result


def reset(bases: list[str]) -> None:
    import urllib.request

    with urllib.request.urlopen(bases[0] + "/_reset", timeout=120) as response:
        response.read()


def measure(row: Row, sides: list[str]) -> None:
    with corpus_server(row) as bases:
        for side in sides:
            row.results[side] = []
        for number in range(row.runs):
            for side in sides:  # in alternation, so drifting load hits both
                reset(bases)
                params = {"bases": bases, "feeds": row.feeds, **getattr(row, side)}
                result = run_once(side, row.scenario, params)
                row.results[side].append(result)
                print(f"  {row.name} · {side} run {number + 1}: {_brief(result)}", flush=True)


def _brief(result: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in result.items())


# --- figures ----------------------------------------------------------------------------


def value(row: Row, result: dict[str, Any]) -> float:
    if row.unit == "entries/s":
        return float(row.feeds * row.entries / result["seconds"])
    if row.unit == "feeds/s":
        return float(row.feeds / result["seconds"])
    if row.unit == "ms":
        return float(result["seconds"] * 1000)
    series = result["rss_series"]
    return float(series[-1] - series[0])


def cell(values: list[float], unit: str) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    digits = 0 if median >= 100 else 1
    text = f"{median:,.{digits}f} {unit}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
    return text


def table(measured: list[Row], publishing: dict[str, Any] | None) -> list[str]:
    lines = ["| work | ours | reader 3.26 | ours / reader |", "|---|---|---|---|"]
    for row in measured:
        ours = [value(row, r) for r in row.results.get("ours", [])]
        theirs = [value(row, r) for r in row.results.get("reader", [])]
        if row.unit == "MB":
            cells = []
            for side in ("ours", "reader"):
                results = row.results.get(side)
                if not results:
                    cells.append("–")
                    continue
                series = results[0]["rss_series"]
                cells.append(
                    f"{series[-1] - series[0]:+.1f} MB ({series[0]:.0f} → {series[-1]:.0f} MB)"
                )
            lines.append(f"| {row.name} | {cells[0]} | {cells[1]} | – |")
            continue
        ratio = "–"
        if ours and theirs:
            if row.unit in ("entries/s", "feeds/s"):
                ratio = f"{statistics.median(ours) / statistics.median(theirs):.1f}×"
            else:
                ratio = f"{statistics.median(theirs) / statistics.median(ours):.1f}× less time"
        lines.append(
            f"| {row.name} | {cell(ours, row.unit)} | {cell(theirs, row.unit)} | {ratio} |"
        )
        if row.show_peak:
            peaks = [
                [r.get("peak_tree_pss_mb", r["peak_rss_mb"]) for r in row.results.get(s, [])]
                for s in ("ours", "reader")
            ]
            lines.append(
                f"| peak memory (PSS, process and workers), {row.name} | {cell(peaks[0], 'MB')} "
                f"| {cell(peaks[1], 'MB')} | – |"
            )
    if publishing:
        full, alone = publishing["full_seconds"], publishing["feedgen_seconds"]
        lines.append(
            f"| publish: full rebuild, {publishing['feeds']} feeds × {publishing['entries']} "
            f"entries ({publishing['files']} files) | {full:.2f} s | feedgen alone: "
            f"{alone:.2f} s | {full / alone:.2f}× feedgen |"
        )
        every = publishing.get("feedgen_every_page_seconds")
        if every:
            lines.append(
                f"| publish: full rebuild vs feedgen rendering every Atom page it writes "
                f"| {full:.2f} s | {every:.2f} s | {full / every:.2f}× feedgen |"
            )
        each = [seconds * 1000 for seconds in publishing.get("incremental_all", [])]
        lines.append(
            f"| publish: incremental, after 1 new entry (median of {len(each)}, one "
            f"publisher) | {cell(each, 'ms')} | – | – |"
        )
    return lines


def machine() -> list[str]:
    def run(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False).stdout
        except OSError:
            return ""

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in run(["lscpu"]).splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "unknown",
    )
    memory = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "unknown",
    )
    versions = []
    for name in ("feedparser", "lxml", "nh3", "pycurl", "feedgen", "reader"):
        with suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    return [
        f"- CPU: {model}, {run(['nproc']).strip() or os.cpu_count()} cores (nproc)",
        f"- memory: {memory}",
        f"- Python {platform.python_version()} on {platform.platform()}",
        f"- {', '.join(versions)}",
        f"- load average when started: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def write_report(path: Path, lines: list[str], command: str, notes: list[str]) -> None:
    text = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (see bench/__main__.py); rerun with:",
        "",
        f"    {command}",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on this machine:",
        "",
        *machine(),
        "",
        "Medians of the runs, min–max in brackets; each run is a fresh process. The corpus",
        "is synthetic and seeded (bench/corpus.py): Chinese titles, 2–4 KB HTML bodies,",
        "share-code links, ~10% cross-source duplicates, ~10% GBK feeds, ~10% Atom,",
        "served by bench/server.py from 127.0.0.x with ETag/Last-Modified and TCP_NODELAY.",
        "",
        *lines,
        "",
        f"Load average when finished: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        *notes,
        "",
    ]
    path.write_text("\n".join(text) + kept_sections(path), encoding="utf-8")


KEPT_HEADING = "\n## Reliability"  # written by hand from tests/reliability: kept as it is


def kept_sections(path: Path) -> str:
    """The hand-written part of an existing report, from KEPT_HEADING on."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    start = text.find(KEPT_HEADING)
    return text[start:] if start >= 0 else ""


NOTES = [
    "How each side runs:",
    "",
    "- ours: `aggregator.run.pollrun.poll_many`, exactly as `aggregator poll` runs it (the",
    "  daemon runs the same steps through `poll.poll_source` from its scheduler's",
    "  threads), on a fresh SQLite store. One thread keeps the fetches in flight (a curl",
    "  multi handle) and reads and stores each answer as it comes. When 100 or more",
    "  sources have never been parsed (the first-poll rows), they are shared out over one",
    "  worker process per core (2 here), each with its own share of the fetches in",
    "  flight, connection and fetcher, and the per-host limit of 4 divided between them;",
    "  the workers fetch and parse, and the calling process stores what they parsed (one",
    "  writer). Later polls run in one process. Per poll:",
    "  fetch with pycurl (kept-alive connections, conditional GET), encoding decision and",
    "  DOCTYPE screen, lxml fast path (documents with a DTD, or that it declines, go to",
    "  feedparser under the sandbox limits), entries whose raw-XML digest is already",
    "  stored skipped before any other work, nh3, share codes, rules, dedup,",
    "  tombstone-aware ingest; poll states committed 64 polls at a time. Fetches in",
    "  flight: 4 (the default `workers` setting) in every row but the 50 ms one, which",
    "  keeps 128 in flight over 32 loopback hosts (4 per host).",
    "- reader: `make_reader()` on a fresh database, `add_feed()` for every feed, then",
    "  `update_feeds(workers=8, scheduled=False)` (the one-changed-feed row: `update_feed()`).",
    "- peak memory: the highest sum, sampled every 100 ms, of the PSS of the run's process",
    "  and its worker processes (PSS counts a page shared by forked workers once, split",
    "  between them; RSS would count it in each). Each run's own `ru_maxrss` is in the log",
    "  as peak_rss_mb. Every 100 ms, not 20: reading PSS walks a process's page tables",
    "  (~1 ms of CPU per 70 MB process, from the run's 2 cores), and every 20 ms it took",
    "  a tenth of the machine from our three-process first poll, with the same peaks.",
    "  The cycles row polls the whole set",
    "  10 more times after the first poll, with one new entry in 10% of the feeds each",
    "  cycle, in one long-lived process (as the daemon polls), and reports VmRSS growth",
    "  from the first cycle to the last.",
    "- publishing: full rebuild = `Publisher.publish()` of every feed into an empty folder;",
    "  feedgen alone = rendering the same documents from articles already in memory.",
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--no-reader", action="store_true", help="measure our side only")
    parser.add_argument("--only", help="run only rows whose name contains this text")
    parser.add_argument("--no-publish", action="store_true", help="skip the publishing rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per side and row")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    sides = ["ours"] if args.no_reader else ["ours", "reader"]
    measured = []
    for row in rows(args.quick, 1 if args.quick else args.runs):
        if args.only and args.only not in row.name:
            continue
        print(f"{row.name}:", flush=True)
        measure(row, sides)
        measured.append(row)
    publishing = None
    if not args.no_publish and not args.only:
        feeds, entries = (1000, 50) if not args.quick else (20, 10)
        print(f"publishing {feeds} feeds × {entries} entries:", flush=True)
        publishing = run_once(
            "ours",
            "publish",
            {"feeds": feeds, "entries": entries, "runs": 3 if not args.quick else 1},
        )
        publishing.update(feeds=feeds, entries=entries)
        print(f"  {_brief(publishing)}", flush=True)
    lines = table(measured, publishing)
    print("\n".join(lines))
    command = "python3 dev.py bench " + " ".join(sys.argv[1:])
    write_report(args.output, lines, command.strip(), NOTES)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
