"""The cores a process may use are those of its CPU set (a container's, or taskset's),
which os.cpu_count() does not see: the poll's worker processes and the parse sandbox
count these. And memory the C allocator has freed goes back to the system when the
daemon asks (after a publish)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from aggregator.machine import give_back_free_memory, usable_cores


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


FREED_HEAP = r"""
import ctypes
from aggregator.machine import give_back_free_memory

def resident_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
# 100 MB in blocks small enough for the heap, touched; all freed but the last, which
# keeps the heap's top where it is, so free() alone gives nothing back.
blocks = [libc.malloc(1000) for _ in range(100_000)]
for block in blocks:
    ctypes.memset(block, 1, 1000)
for block in blocks[:-1]:
    libc.free(block)
held = resident_mb()
give_back_free_memory()
print(held, resident_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FREED_HEAP], capture_output=True, text=True, check=True
    )
    held, after = map(int, done.stdout.split())
    assert held - after > 50  # of the ~100 MB freed
    give_back_free_memory()  # and harmless when there is little to give back
