"""SIGKILL real `aggregator` commands while they publish; the next command, whichever it
is, leaves the output folder as a fresh publish of the same database writes it.

The short form runs in the suite; `python -m tests.reliability.publishcrash --kills 40`
is the long one (its figures are in BENCHMARKS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.reliability import publishcrash

pytestmark = pytest.mark.skipif(
    not Path("/proc/locks").exists(), reason="reads who holds the lock from /proc/locks (Linux)"
)


def test_a_kill_during_any_publish_is_finished_by_the_next_command(tmp_path: Path) -> None:
    report = publishcrash.run(5, tmp_path, sources=10, seed=3, log=sys.stderr)
    assert report.problems == []
    assert report.kills == 5
    assert report.moments.total() == 5
    assert len(report.pairs) == 5  # every command killed once, each recovered by another


@pytest.mark.reliability
def test_more_kills_during_publishes_are_always_finished(tmp_path: Path) -> None:
    """Other pairs than the short form's (the sixth kill starts the second round of
    pairings), another seed."""
    report = publishcrash.run(7, tmp_path, sources=8, seed=11)
    assert report.problems == []
    assert report.kills == 7
    assert sum(n for moment, n in report.moments.items() if "publishing" in moment) >= 4
