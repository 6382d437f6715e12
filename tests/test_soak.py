"""Soak, the short CI form: many sources changing while the real daemon polls them.

The full form (30+ minutes, 300 sources) is `python -m tests.reliability.soak
--minutes 30`; its figures are in BENCHMARKS.md. Deselect with
`-m "not reliability"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import soak


@pytest.mark.reliability
def test_a_minute_of_churn_leaves_exactly_what_was_served(tmp_path: Path) -> None:
    report = soak.run(45, tmp_path, sources=200, seed=3, intervals=(2.0, 3.0), sample_every=3.0)
    assert report.problems == []
    growth = report.growth()
    # Nothing leaks: after warm-up, descriptors and threads hold steady, memory nearly so.
    assert growth["fds_at_end"] <= growth["fds_after_warmup"] + 3
    assert growth["threads_max"] <= growth["threads_after_warmup"] + 2
    assert growth["rss_mib_at_end"] <= growth["rss_mib_after_warmup"] * 1.1 + 5
    assert sum(v for k, v in report.events.items() if k.startswith("failing")) > 0
    assert report.events.get("edited", 0) > 0 and report.events.get("removed", 0) > 0
