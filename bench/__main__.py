"""Benchmarks: aggregator against lemon24/reader 3.26 on the same synthetic feeds.

    python -m bench                 # the full table, results into BENCHMARKS.md
    python -m bench --quick         # small sizes, one run each (a smoke test)
    python -m bench --no-reader     # our side only
    python -m bench --markup cms    # bodies in the markup many CMSs write (bench/corpus.py)
    (python3 dev.py bench / make bench install the extras first)

For each row a corpus server (bench.server) starts in its own process; then each
side runs as its users run it, in alternation, several runs each: the whole command
(`aggregator poll --all --no-publish`; reader's update_feeds in a fresh interpreter)
and in-process (bench.runs), with the same number of fetches in flight on both
sides. Medians are printed with min-max and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.corpus import MARKUPS
from bench.runs import READER_UPDATE, TreeMemory, compiled_as_installed, write_config

ROOT = Path(__file__).resolve().parent.parent


# Loopback hosts the corpus is served from: with the per-host limit of 4, 50 hosts let
# up to 200 fetches be in flight, so the per-host limit is not what holds our side back
# where reader has none.
HOSTS = 50


@dataclass
class Row:
    name: str
    scenario: str
    feeds: int
    entries: int
    unit: str  # "entries/s", "feeds/s", "ms", "MB"
    hosts: int = HOSTS
    latency: float = 0.0
    runs: int = 3
    command: bool = True  # also measure the whole command (first and second polls)
    show_peak: bool = False  # add a peak-memory row
    # by variant: "ours", "reader" (in-process), "ours-command", "reader-command"
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def default_workers() -> int:
    """Fetches in flight on both sides: our default `workers` setting."""
    from aggregator.config.loader import Settings

    return Settings().workers


def rows(quick: bool, runs: int) -> list[Row]:
    """The table's rows; a quick run (a smoke test) leaves out the two that only repeat
    another's path at other sizes or latency."""
    every = all_rows(quick, runs)
    if quick:
        repeats = (every[0].name, every[3].name)
        return [row for row in every if row.name not in repeats]
    return every


def all_rows(quick: bool, runs: int) -> list[Row]:
    big, small, mid = (1000, 20, 50) if not quick else (40, 5, 10)
    many_feeds = 200 if not quick else 20
    return [
        Row(
            f"first poll, {many_feeds} feeds × {mid} entries",
            "first",
            many_feeds,
            mid,
            "entries/s",
            runs=runs,
        ),
        Row(
            f"first poll, {big} feeds × {small} entries",
            "first",
            big,
            small,
            "entries/s",
            runs=runs,
            show_peak=True,
        ),
        Row(f"second poll, all 304, {big} feeds", "second", big, small, "feeds/s", runs=runs),
        Row(
            f"first poll, {big // 2} feeds × {small} entries, 50 ms latency",
            "first",
            big // 2,
            small,
            "entries/s",
            latency=0.05,
            runs=runs,
        ),
        Row(
            f"second poll, all 304, {big // 2} feeds, 50 ms latency",
            "second",
            big // 2,
            small,
            "feeds/s",
            latency=0.05,
            runs=runs,
        ),
        Row(
            f"one changed feed, 1 new entry of {mid + 1}",
            "changed",
            many_feeds,
            mid,
            "ms",
            runs=runs,
            command=False,
        ),
        # One long-lived process, as the daemon polls: its memory must stay flat.
        Row(
            f"RSS over 10 cycles, {big} feeds (10% change per cycle)",
            "cycles",
            big,
            small,
            "MB",
            runs=1,
            command=False,
        ),
    ]


@contextmanager
def corpus_server(row: Row, markup: str) -> Iterator[list[str]]:
    command = [sys.executable, "-m", "bench.server", str(row.feeds), str(row.entries)]
    command += ["--hosts", str(row.hosts), "--latency", str(row.latency), "--markup", markup]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield ready["bases"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def _timed(command: list[str]) -> dict[str, Any]:
    """Run a command as a user would, timed from its start to its exit, with the peak
    PSS of its process tree."""
    # Every run starts with no dirty pages left by the run before (the other side's
    # database): their writeback would otherwise land in this run's fsyncs.
    os.sync()
    started = time.perf_counter()
    with (
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as run,
        TreeMemory(run.pid) as memory,
    ):
        _, stderr = run.communicate()
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_tree_pss_mb": round(memory.peak_kb / 1024, 1)}


AGGREGATOR = str(Path(sys.executable).parent / "aggregator")


def run_command(side: str, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    """One whole-command run in a fresh folder: `aggregator poll --all --no-publish` on a
    config file with default settings, or reader's update_feeds in a fresh interpreter.
    What comes before (writing the config and checking it, adding reader's feeds, the
    first poll of a second-poll run) is not timed."""
    with tempfile.TemporaryDirectory(prefix="bench-command-") as name:
        folder = Path(name)
        if side == "ours":
            config = str(write_config(folder, params))
            poll = [AGGREGATOR, "poll", "--all", "--no-publish", "--config", config]
            subprocess.run(
                [AGGREGATOR, "config", "check", "--config", config],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if scenario == "second":
                subprocess.run(poll, check=True, stdout=subprocess.DEVNULL)
            return _timed(poll)
        database = str(folder / "reader.sqlite")
        run_once("reader", "setup", {**params, "database": database, "then": scenario})
        return _timed([sys.executable, "-c", READER_UPDATE, database, str(params["workers"])])


def run_once(side: str, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    """One in-process run (bench.runs) in a fresh process; its own clock times the poll."""
    os.sync()
    command = [sys.executable, "-m", "bench.runs", side, scenario, json.dumps(params)]
    with (
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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


def variants(row: Row, sides: list[str]) -> list[str]:
    both = [*sides, *(f"{side}-command" for side in sides)] if row.command else sides
    return both


def measure(row: Row, sides: list[str], workers: int, markup: str) -> None:
    with corpus_server(row, markup) as bases:
        names = variants(row, sides)
        for name in names:
            row.results[name] = []
        for number in range(row.runs):
            # In alternation, so drifting load hits both sides; who goes first rotates.
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                reset(bases)
                side, _, command = name.partition("-")
                params = {"bases": bases, "feeds": row.feeds, "workers": workers}
                if command:
                    result = run_command(side, row.scenario, params)
                else:
                    result = run_once(side, row.scenario, params)
                result["load"] = round(os.getloadavg()[0], 2)
                row.results[name].append(result)
                print(f"  {row.name} · {name} run {number + 1}: {_brief(result)}", flush=True)


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


def _ratio(row: Row, ours: list[float], theirs: list[float]) -> str:
    if not (ours and theirs):
        return "–"
    if row.unit in ("entries/s", "feeds/s"):
        return f"{statistics.median(ours) / statistics.median(theirs):.1f}×"
    return f"{statistics.median(theirs) / statistics.median(ours):.1f}× less time"


def _line(row: Row, name: str, suffix: str = "") -> str:
    ours = [value(row, r) for r in row.results.get(f"ours{suffix}", [])]
    theirs = [value(row, r) for r in row.results.get(f"reader{suffix}", [])]
    return (
        f"| {name} | {cell(ours, row.unit)} | {cell(theirs, row.unit)} "
        f"| {_ratio(row, ours, theirs)} |"
    )


def _peak_line(row: Row, suffix: str) -> str:
    peaks = [
        [r["peak_tree_pss_mb"] for r in row.results.get(f"{side}{suffix}", [])]
        for side in ("ours", "reader")
    ]
    return (
        f"| peak memory (PSS of the process tree), {row.name} | {cell(peaks[0], 'MB')} "
        f"| {cell(peaks[1], 'MB')} | – |"
    )


def _cycles_line(row: Row) -> str:
    cells = []
    for side in ("ours", "reader"):
        results = row.results.get(side)
        if not results:
            cells.append("–")
            continue
        series = results[0]["rss_series"]
        cells.append(f"{series[-1] - series[0]:+.1f} MB ({series[0]:.0f} → {series[-1]:.0f} MB)")
    return f"| {row.name} | {cells[0]} | {cells[1]} | – |"


def command_table(measured: list[Row]) -> list[str]:
    lines = [
        "| work | ours: `aggregator poll --all --no-publish` | reader: a fresh `python` "
        "running `update_feeds` | ours / reader |",
        "|---|---|---|---|",
    ]
    for row in measured:
        if row.command:
            lines.append(_line(row, row.name, "-command"))
            if row.show_peak:
                lines.append(_peak_line(row, "-command"))
    return lines


def table(measured: list[Row], publishing: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| work | ours: `poll_run`, as `aggregator poll` calls it | reader: "
        "`update_feeds` | ours / reader |",
        "|---|---|---|---|",
    ]
    for row in measured:
        if row.unit == "MB":
            lines.append(_cycles_line(row))
            continue
        # No peak-memory line here: an in-process run's tree also holds its setup (the
        # config check that works the slugs out); the whole-command table has it.
        lines.append(_line(row, row.name))
    for run in publishing:
        lines += _publishing_lines(run)
    return lines


def _publishing_lines(run: dict[str, Any]) -> list[str]:
    """A full rebuild (cold and warm) against feedgen rendering the same pages, in the
    formats feedgen writes; then against feedgen rendering current documents only,
    which is less than a rebuild writes (archive pages, listings)."""
    formats = run.get("formats")
    which = "Atom only" if formats == ["atom"] else "Atom, RSS and JSON Feed"
    theirs = "every Atom page" if formats == ["atom"] else "every page as Atom and RSS 2.0"
    same = run[
        "feedgen_every_page_seconds" if formats == ["atom"] else "feedgen_every_page_xml_seconds"
    ]
    files, size = run["files"], f"{run['feeds']} feeds × {run['entries']} entries"
    lines = []
    for label, key in (("cold", "full_seconds"), ("warm", "full_warm_seconds")):
        full = run[key]
        lines.append(
            f"| publish, {which}: full rebuild ({label}), {size}, {files} files "
            f"({files / full:,.0f} files/s) | {full:.2f} s | feedgen rendering {theirs}: "
            f"{same:.2f} s | {full / same:.2f}× feedgen |"
        )
    current = run["feedgen_seconds"]
    lines.append(
        f"| publish, {which}: full rebuild (cold) against feedgen rendering each feed's "
        f"current document only (not the same documents) | {run['full_seconds']:.2f} s | "
        f"{current:.2f} s | {run['full_seconds'] / current:.2f}× feedgen |"
    )
    if formats != ["atom"]:
        each = [seconds * 1000 for seconds in run.get("incremental_all", [])]
        lines.append(
            f"| publish: incremental, after 1 new entry (median of {len(each)}, one "
            f"publisher) | {cell(each, 'ms')} | – | – |"
        )
    return lines


STARTED_LOAD: list[float] = []  # the load average when the run began


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
        f"- load average when started: {', '.join(f'{x:.2f}' for x in STARTED_LOAD)}",
    ]


def conditions(workers: int) -> list[str]:
    """What both sides ran with, stated above the tables."""
    from aggregator.config.loader import Settings

    defaults = Settings()
    return [
        "Conditions, every row: the corpus server (bench/server.py, its own process) serves",
        f"each feed from one of {HOSTS} loopback hosts (127.0.0.1–127.0.0.{HOSTS}), keep-alive,",
        "ETag/Last-Modified and 304s, TCP_NODELAY; the 50 ms rows answer every request 50 ms",
        "late. The same machine runs both sides and the server, one run at a time; runs",
        "alternate between the sides (who goes first rotates) and each starts after `os.sync()`.",
        "Both sides run from compiled bytecode, as after `pip install` (this machine sets",
        "PYTHONDONTWRITEBYTECODE=1; the driver compiles our package and unsets it).",
        "",
        f"- concurrency: {workers} fetches in flight on both sides: our default `workers`",
        f"  setting, and reader's `update_feeds(workers={workers})`.",
        "- ours: a config file with default settings, only `database` and `output_dir` set:",
        f"  workers = {defaults.workers}, per_host_limit = {defaults.per_host_limit},"
        f" parse_inline_max_bytes = {defaults.parse_inline_max_bytes},",
        f"  max_entries = {defaults.max_entries}, connect_timeout ="
        f" {defaults.connect_timeout:g} s, read_timeout = {defaults.read_timeout:g} s,"
        f" fetch_deadline = {defaults.fetch_deadline:g} s,",
        f"  parse_timeout = {defaults.parse_timeout:g} s, parse_memory_limit ="
        f" {defaults.parse_memory_limit // 2**20} MiB. One category and one tag, in",
        "  Chinese, with no pinned slug (三秦都市报, 三秦都市报新闻); share codes by",
        '  `{ param = "infoCode" }`.',
        f"- reader {_version('reader')} installed as its documentation says (`pip install"
        " reader`), run",
        "  with its own vendored feedparser (the default; `sgmllib3k` installed, which that",
        "  feedparser imports), `make_reader(path)`, then `update_feeds(workers=N,",
        "  scheduled=False)` (`scheduled=False` polls every feed, as `poll --all` does).",
        "",
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def write_report(
    path: Path, sections: list[str], command: str, notes: list[str], workers: int, markup: str
) -> None:
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
        "share-code links, ~10% cross-source duplicates, ~10% GBK feeds, ~10% Atom;",
        f"bodies in the {markup!r} markup ({MARKUP_TEXT[markup]}).",
        "",
        *conditions(workers),
        *sections,
        "",
        f"Load average when finished: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        *notes,
        "",
    ]
    path.write_text("\n".join(text) + kept_sections(path), encoding="utf-8")


MARKUP_TEXT = {
    "seed": "paragraphs shaped like the seed article's",
    "cms": "as many CMSs write them: inline styles, runs of &nbsp;, XHTML line breaks,"
    " sized images",
}

# Written by hand (figures from scripts and tests/reliability): kept as they are.
KEPT_HEADINGS = ("\n## Measured apart from the comparison", "\n## Reliability")


def kept_sections(path: Path) -> str:
    """The hand-written part of an existing report, from the first KEPT_HEADINGS on."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    starts = [i for i in (text.find(h) for h in KEPT_HEADINGS) if i >= 0]
    return text[min(starts) :] if starts else ""


NOTES = [
    "How each side runs:",
    "",
    "- whole command: the time from starting the process to its exit, as a cron job",
    "  waits for it. Ours: `aggregator poll --all --no-publish --config FILE` (the",
    "  installed console script), after `aggregator config check` on the new file (the",
    "  first command to read a config computes its slugs and keeps them beside the",
    "  database). Reader: `python -c` running `make_reader(path).update_feeds(...)` on a",
    "  database where another process has already added the feeds. A second-poll run",
    "  polls once, untimed, before the timed run.",
    "- in-process: the poll alone, timed inside a process that has imported everything,",
    "  loaded the config (checked first, as above) and opened the store. Ours:",
    "  `pollrun.poll_run`,",
    "  the function `aggregator poll` calls, with the config's settings (no line per",
    "  source printed). It keeps the fetches in flight from one thread (a curl multi handle)",
    "  and reads and stores each answer as it comes; when 100 or more sources have never",
    "  been parsed (the first polls) they are shared out over one worker process per",
    "  core (2 here), each with half of the fetches in flight, of the per-host limit and",
    "  of each host's sources; each worker fetches, parses and stores its share (the",
    "  workers take SQLite's write lock in turn). Reader:",
    "  `update_feeds()` on a `make_reader()` made before the clock starts; the",
    "  one-changed-feed row: `update_feed()` against `aggregator poll ID`'s path.",
    "- peak memory: the highest sum, sampled every 100 ms from outside, of the PSS of the",
    "  run's process and its worker processes (PSS counts a page shared by forked",
    "  workers once, split between them). The cycles row polls the whole set 10 more",
    "  times after the first poll, with one new entry in 10% of the feeds each cycle, in",
    "  one long-lived process (as the daemon polls), and reports VmRSS growth from the",
    "  first cycle to the last.",
    "- publishing (bench/publishing.py): full rebuild = `Publisher.publish()` of every",
    "  feed into an empty folder, every page of it (the current documents, the RFC 5005",
    "  archive pages, the listings); cold = no cached entry fragment, warm = every one",
    "  cached. feedgen = feedgen rendering the same pages from articles read before its",
    "  clock starts, in the formats it writes (Atom and RSS 2.0; it has no JSON Feed, so",
    "  with the default formats our side writes a third format more). With Atom alone both",
    "  sides make exactly the same documents.",
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--no-reader", action="store_true", help="measure our side only")
    parser.add_argument("--only", help="run only rows whose name contains this text")
    parser.add_argument("--no-publish", action="store_true", help="skip the publishing rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per side and row")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--markup", choices=MARKUPS, default="seed", help="the bodies' markup (bench/corpus.py)"
    )
    args = parser.parse_args()
    compiled_as_installed()
    STARTED_LOAD[:] = os.getloadavg()
    sides = ["ours"] if args.no_reader else ["ours", "reader"]
    workers = default_workers()
    measured = []
    for row in rows(args.quick, 1 if args.quick else args.runs):
        if args.only and args.only not in row.name:
            continue
        print(f"{row.name}:", flush=True)
        measure(row, sides, workers, args.markup)
        measured.append(row)
    publishing = []
    if not args.no_publish and not args.only:
        feeds, entries = (1000, 50) if not args.quick else (20, 10)
        # The default formats, then Atom alone: the documents feedgen writes, exactly.
        for formats in (None, ["atom"]):
            print(f"publishing {feeds} feeds × {entries} entries, {formats}:", flush=True)
            runs = 3 if not args.quick else 1
            params = {"feeds": feeds, "entries": entries, "runs": runs, "markup": args.markup}
            run = run_once("ours", "publish", {**params, "formats": formats})
            run.update(feeds=feeds, entries=entries, formats=formats)
            print(f"  {_brief(run)}", flush=True)
            publishing.append(run)
    sections = [
        "### Whole command",
        "",
        *command_table(measured),
        "",
        "### In-process",
        "",
        *table(measured, publishing),
    ]
    loads = [r["load"] for row in measured for runs in row.results.values() for r in runs]
    if loads:
        sections += [
            "",
            f"1-minute load average at the end of each run: {min(loads):.1f}–"
            f"{max(loads):.1f} (median {statistics.median(loads):.1f}).",
        ]
    print("\n".join(sections))
    command = "python3 dev.py bench " + " ".join(sys.argv[1:])
    write_report(args.output, sections, command.strip(), NOTES, workers, args.markup)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
