"""Run a parse under a time and a memory limit, in a child process.

The DOCTYPE screen (xmlguard) stops the entity attacks we know; this is the
backstop for the ones we do not, and for documents that are simply huge.
Each source kind (see kinds.py) decides what it reads in-process (small
documents without a DTD: nothing in them can expand, and the worst we found at
128 KiB, a feedparser quadratic on 12 000 attributes, took 2.4 s) and what it
hands to ``run_in_worker``: a fresh ``python -m aggregator.parse.sandbox``
process, which limits its own address space before it reads the document; this
process kills it when its wall-clock time is up. Either way the poll gets a
ParseError. A fresh interpreter (about 0.15 s to start) rather than a fork: a
fork of the threaded daemon could inherit a lock held by another thread, and
multiprocessing would re-run the daemon's main module in every worker. A process
runs at most two such parses per core at once: parsing is CPU work, and the
daemon's poll threads would otherwise start one each, every one with the memory
its document needs (two, so that a couple of parses running to their time limit
do not hold up every other).
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aggregator.errors import ParseError
from aggregator.machine import usable_cores
from aggregator.parse.limits import MIB, ParseLimits


@dataclass(frozen=True)
class WorkerReport:
    result: Any  # what the job's function returned (a ParsedFeed, an article's HTML)
    error: str | None
    max_rss_kib: int  # the worker's peak resident size, for measurements (0: unknown)


def _address_space() -> int:
    """This process's current virtual size in bytes (Linux), 0 when unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_self(memory: int, timeout: float) -> None:
    start = _address_space()
    if start:  # unknown start size (no /proc): rely on the time limit alone
        resource.setrlimit(resource.RLIMIT_AS, (start + memory, start + memory))
    # A CPU-time ceiling too, in case the parent is gone and cannot kill us.
    cpu = int(timeout) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


def _peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM: unlike ru_maxrss, it starts afresh at exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


RUNNING = threading.BoundedSemaphore(2 * usable_cores())  # parses in child processes at once


# A parse to run in the worker: a module-level function (pickled by name, so the worker
# imports its module) and its keyword arguments, plain data.
Job = tuple[Callable[..., Any], dict[str, Any]]
Result = TypeVar("Result")


def _work(job: Job, memory: int) -> WorkerReport:
    """Runs in the worker process."""
    function, arguments = job
    result: Any = None
    error: str | None = None
    try:
        result = function(**arguments)
    except MemoryError:
        result = None
        error = f"the parse needed more than the {memory // MIB} MiB memory limit"
    except ParseError as exc:
        error = str(exc)
    except Exception as exc:  # a parser bug: report it, never hang the parent
        error = f"the parser failed: {type(exc).__name__}: {exc}"
    return WorkerReport(result, error, _peak_rss_kib())


def _worker_main() -> None:
    """python -m aggregator.parse.sandbox MEMORY TIMEOUT: a pickled Job on stdin,
    a pickled WorkerReport on stdout."""
    memory = int(sys.argv[1])
    _limit_self(memory, float(sys.argv[2]))
    try:
        job = pickle.load(sys.stdin.buffer)
        report = _work(job, memory)
        out = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        out = pickle.dumps(WorkerReport(None, "the parse needed more than its memory limit", 0))
    sys.stdout.buffer.write(out)
    sys.stdout.flush()


def _environment() -> dict[str, str]:
    """The worker must import this very package, installed or not."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def run_in_worker(
    function: Callable[..., Any], arguments: dict[str, Any], limits: ParseLimits
) -> WorkerReport:
    """function(**arguments) in a child process under the limits, once one of the
    process's RUNNING slots is free; the child is always reaped. The function and the
    arguments must pickle (a module-level function)."""
    with RUNNING:
        return _run(pickle.dumps((function, arguments), pickle.HIGHEST_PROTOCOL), limits)


def _run(job: bytes, limits: ParseLimits) -> WorkerReport:
    command = [
        sys.executable,
        "-m",
        "aggregator.parse.sandbox",
        str(limits.memory),
        str(limits.timeout),
    ]
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(),
            close_fds=True,
        )
    except OSError as exc:
        return WorkerReport(None, f"cannot start the parser process: {exc}", 0)
    try:
        out, err = process.communicate(job, timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return WorkerReport(None, f"the parse took longer than {limits.timeout:g} s", 0)
    finally:
        if process.poll() is None:  # an exception above: never leave it running
            process.kill()
            process.wait()
    try:
        # Our own worker's output: pickle is safe here, the document never reaches it raw.
        report: WorkerReport = pickle.loads(out)
    except Exception:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return WorkerReport(
            None, f"the parser process died (exit {process.returncode}): {last[0][:200]}", 0
        )
    return report


def parsed_in_worker(
    function: Callable[..., Result], arguments: dict[str, Any], limits: ParseLimits
) -> Result:
    """run_in_worker's result, or the ParseError it failed with."""
    report = run_in_worker(function, arguments, limits)
    if report.error is not None or report.result is None:
        raise ParseError(report.error or "the parse failed")
    result: Result = report.result
    return result


if __name__ == "__main__":
    # Run the imported module's copy, so what is pickled names the module, not __main__.
    from aggregator.parse import sandbox

    sandbox._worker_main()
