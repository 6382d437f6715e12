"""A job for the parse sandbox's own tests: importable by the child process by name."""

from __future__ import annotations

import time


def nap(seconds: float) -> tuple[float, float]:
    """Sleep in the child; when it began and ended (wall clock, comparable across processes)."""
    began = time.time()
    time.sleep(seconds)
    return began, time.time()
