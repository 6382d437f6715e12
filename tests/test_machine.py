"""The cores a process may use are those of its CPU set (a container's, or taskset's),
which os.cpu_count() does not see: the poll's worker processes and the parse sandbox
count these."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aggregator.machine import usable_cores


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU sets are Linux's")
def test_a_process_held_to_one_core_counts_one() -> None:
    def hold_to_first_core() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    counted = subprocess.run(
        [sys.executable, "-c", "from aggregator.machine import usable_cores as u; print(u())"],
        preexec_fn=hold_to_first_core,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert counted.strip() == "1"
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
