"""The benchmark runs (quick sizes, our side only) and produces its table.

Timings are not asserted: this only proves `python -m bench` works end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_produces_rows(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-reader", "--output", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # whole commands and in-process runs, on a shared machine
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    names = " ".join(rows)
    expected = ("first poll", "all 304", "50 ms latency", "one changed feed", "RSS", "publish")
    for name in expected:
        assert name in names
    assert "entries/s" in names and "feeds/s" in names
    # A full publish against feedgen on the same pages, with every format and Atom alone.
    assert "every page as Atom and RSS 2.0" in names and "every Atom page" in names
    assert "python3 dev.py bench --quick --no-reader" in text


def bench_output(*args: str) -> str:
    """What `python -m bench.<args>` prints, once it has exited cleanly."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_stages_of_a_first_poll_are_measured() -> None:
    result = json.loads(bench_output("bench.stages", "3", "4").strip().splitlines()[-1])
    assert result["entries"] > 0
    for stage in ("parse", "store"):
        assert result[f"{stage}_us_per_entry"] > 0


def test_large_answers_at_once_are_measured() -> None:
    said = bench_output("bench.large_bodies", "--sources", "3", "--mib", "1", "--runs", "1")
    runs = [json.loads(line) for line in said.splitlines()]
    assert [r["max_bytes_in_flight"] == "default" for r in runs] == [True, False]
    assert all(r["peak_tree_pss_mb"] > 0 and r["sources"] == 3 for r in runs)
