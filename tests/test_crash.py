"""SIGKILL the daemon at random moments, restart it, lose nothing (the short CI form).

The full form (100+ kills) is `python -m tests.reliability.crash --kills 100`;
its figures are in BENCHMARKS.md. Deselect with `-m "not reliability"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import crash


@pytest.mark.reliability
def test_killed_anywhere_it_loses_nothing_and_converges(tmp_path: Path) -> None:
    report = crash.run(12, tmp_path, sources=12, seed=7, max_delay=1.2, names="en")
    assert report.problems == []
    assert report.kills == 12
    assert report.integrity == "ok"
    assert report.entries > 0 and report.reader_reads > 0
