"""What the machine lets this process use."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's CPU set), not all
    the machine has; os.process_cpu_count() from Python 3.13 on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes  # only a daemon trims: a command's start-up does without loading it

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None
    return trim


def give_back_free_memory() -> None:
    """Hand what the C allocator has freed back to the system (glibc's malloc_trim, a
    few milliseconds at most). After a publish that rendered thousands of documents, or
    the listings of tens of thousands of feeds, its heap keeps tens of megabytes a
    long-lived daemon would otherwise hold for good. Nothing where there is no such call."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
