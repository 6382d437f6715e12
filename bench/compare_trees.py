"""Whole commands of two checkouts side by side: is the newer one slower?

    python -m bench.compare_trees OLD_CHECKOUT NEW_CHECKOUT [--runs 6]

Each checkout needs its own .venv (``python3 dev.py test`` or ``run`` makes it). The
corpus (bench/corpus.py of OLD, seeded, 200 feeds x 50 entries over 16 loopback hosts) is
served by OLD's bench/server.py, so both sides read the same bytes. Each run starts from an
empty folder and times, as a cron user waits for them: ``aggregator poll --all
--no-publish`` (first poll), the same again (all 304), then ``aggregator publish``. Both
sides get the same settings: workers = 4, and on a checkout with output formats only Atom
and JSON Feed (what the older releases publish). Runs alternate, who goes first rotates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

FEEDS, ENTRIES, HOSTS = 200, 50, 16
STEPS = ("first poll", "all 304", "publish")


def write_config(work: Path, bases: list[str], has_formats: bool) -> Path:
    lines = ["[settings]", f'database = "{work}/db.sqlite"', f'output_dir = "{work}/feeds"']
    lines += ["workers = 4", *(['formats = ["atom", "json"]'] if has_formats else []), ""]
    for i in range(FEEDS):
        url = f"{bases[i % len(bases)]}/feeds/{i:05d}.xml"
        lines += ["[[sources]]", f'id = "s{i}"', f'name = "s{i}"', f'url = "{url}"']
        lines += ['category = "c"', 'tags = ["t"]', "allow_private = true", ""]
    path = work / "sources.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def one_run(tree: Path, bases: list[str]) -> dict[str, float]:
    has_formats = (tree / "aggregator" / "publish" / "formats.py").exists()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = str(write_config(work, bases, has_formats))
        command = [str(tree / ".venv" / "bin" / "aggregator"), "--log-level", "error"]
        poll = [*command, "poll", "--all", "--no-publish", "--config", config]
        return {
            "first poll": timed(poll, work),
            "all 304": timed(poll, work),
            "publish": timed([*command, "publish", "--config", config], work),
        }


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    return f"{ordered[len(ordered) // 2]:.2f} s ({ordered[0]:.2f}-{ordered[-1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    for tree in trees.values():  # as after pip install: from compiled bytecode
        subprocess.run(
            [str(tree / ".venv/bin/python"), "-m", "compileall", "-q", "aggregator"],
            cwd=tree,
            check=True,
            capture_output=True,
        )
    server = subprocess.Popen(
        [
            str(trees["old"] / ".venv/bin/python"),
            "-m",
            "bench.server",
            str(FEEDS),
            str(ENTRIES),
            "--hosts",
            str(HOSTS),
        ],
        cwd=trees["old"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    bases = json.loads(server.stdout.readline())["bases"]
    print("load average at start:", os.getloadavg(), flush=True)
    results: dict[str, dict[str, list[float]]] = {k: {s: [] for s in STEPS} for k in trees}
    try:
        for run in range(args.runs):
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                for step, seconds in one_run(trees[name], bases).items():
                    results[name][step].append(seconds)
            print(f"run {run + 1}/{args.runs} done", flush=True)
    finally:
        server.stdin.close()
        server.wait()
    print("load average at end:", os.getloadavg())
    print("| step | old | new |\n|---|---|---|")
    for step in STEPS:
        print(f"| {step} | {summary(results['old'][step])} | {summary(results['new'][step])} |")


if __name__ == "__main__":
    main()
