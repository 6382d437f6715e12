"""Parse a feed under a time and a memory limit.

The DOCTYPE screen (xmlguard) stops the entity attacks we know; this is the
backstop for the ones we do not, and for documents that are simply huge.
Small documents without a DTD are parsed right here: nothing in them can
expand, and the worst we found at 128 KiB (a feedparser quadratic on 12 000
attributes) took 2.4 s; a normal one takes milliseconds. Anything else (a
DTD, or more than parse_inline_max_bytes) is parsed by a fresh
``python -m aggregator.parse.sandbox`` process, which limits its own address
space before it reads the document; this process kills it when its
wall-clock time is up. Either way the poll gets a
ParseError. A fresh interpreter (about 0.15 s to start) rather than a fork:
a fork of the threaded daemon could inherit a lock held by another thread,
and multiprocessing would re-run the daemon's main module in every worker.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aggregator.config.loader import Settings, limits_of
from aggregator.errors import ParseError
from aggregator.models import ParsedFeed
from aggregator.parse.feed import (
    FieldLimits,
    Prepared,
    parse_fast,
    parse_prepared,
    prepare,
    prepare_unread,
)
from aggregator.parse.jsonfeed import looks_like_json, parse_json_feed

MIB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """Limits on one parse; see the [settings] keys of the same names."""

    fields: FieldLimits = field(default_factory=FieldLimits)
    timeout: float = 60.0  # seconds of wall-clock time for one parse in a worker
    memory: int = 512 * MIB  # bytes a worker may allocate beyond its start-up size
    inline_max_bytes: int = 128 * 1024  # larger documents always go to a worker

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseLimits:
        fields = FieldLimits(**limits_of(settings, "fields"))
        return cls(fields=fields, **limits_of(settings, "parse"))


@dataclass(frozen=True)
class WorkerReport:
    feed: ParsedFeed | None
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


def _work(job: tuple[Prepared, str, str, datetime, ParseLimits]) -> WorkerReport:
    """Runs in the worker process."""
    prepared, url, timezone, seen_at, limits = job
    feed: ParsedFeed | None = None
    error: str | None = None
    try:
        feed = parse_prepared(  # the fast path declined already, in the parent
            prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits.fields, fast=False
        )
    except MemoryError:
        feed = None
        error = f"the parse needed more than the {limits.memory // MIB} MiB memory limit"
    except ParseError as exc:
        error = str(exc)
    except Exception as exc:  # a parser bug: report it, never hang the parent
        error = f"the parser failed: {type(exc).__name__}: {exc}"
    return WorkerReport(feed, error, _peak_rss_kib())


def _worker_main() -> None:
    """python -m aggregator.parse.sandbox MEMORY TIMEOUT: a pickled job on stdin,
    a pickled WorkerReport on stdout."""
    _limit_self(int(sys.argv[1]), float(sys.argv[2]))
    try:
        job = pickle.load(sys.stdin.buffer)
        report = _work(job)
        out = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        out = pickle.dumps(WorkerReport(None, "the parse needed more than its memory limit", 0))
    sys.stdout.buffer.write(out)
    sys.stdout.flush()


def _environment() -> dict[str, str]:
    """The worker must import this very package, installed or not."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def run_in_worker(
    prepared: Prepared,
    *,
    url: str,
    timezone: str,
    seen_at: datetime,
    limits: ParseLimits,
) -> WorkerReport:
    """Parse in a child process under the limits; the child is always reaped."""
    job = pickle.dumps((prepared, url, timezone, seen_at, limits), pickle.HIGHEST_PROTOCOL)
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


def needs_worker(prepared: Prepared, limits: ParseLimits) -> bool:
    return prepared.has_dtd or len(prepared.data) > limits.inline_max_bytes


def parse_limited(
    body: bytes,
    *,
    url: str = "",
    content_type: str = "",
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: ParseLimits | None = None,
    known: Callable[[str], bool] | None = None,
) -> ParsedFeed:
    """parse_feed, with a time and memory limit where the document could need one.
    `known` tells raw entry digests already stored (fast path only: see fastparse)."""
    limits = limits or ParseLimits()
    if looks_like_json(body, content_type):  # no entities, no recursion: read here
        return parse_json_feed(
            body, url=url, timezone=timezone, seen_at=seen_at, limits=limits.fields
        )

    # A well-formed document without a DTD goes through lxml in-process, whatever its
    # size: lxml neither expands entities nor lifts its own limits. Most bodies are
    # UTF-8 as sent, and lxml's strict reading spares decoding them here first.
    def fast(ready: Prepared) -> ParsedFeed | None:
        return parse_fast(
            ready, url=url, timezone=timezone, seen_at=seen_at, limits=limits.fields, known=known
        )

    unread = prepare_unread(body, content_type)
    quick = fast(unread) if unread is not None else None
    if quick is not None:
        return quick
    prepared = prepare(body, content_type)
    # Unless lxml refused the unread bytes (before reading any entry, so `known` was
    # not asked), they were these bytes, and would be declined again.
    quick = fast(prepared) if prepared != unread else None
    if quick is not None:
        return quick
    if not needs_worker(prepared, limits):
        return parse_prepared(
            prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits.fields, fast=False
        )
    report = run_in_worker(prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits)
    if report.feed is None:
        raise ParseError(report.error or "the parse failed")
    return report.feed


if __name__ == "__main__":
    # Run the imported module's copy, so what is pickled names the module, not __main__.
    from aggregator.parse import sandbox

    sandbox._worker_main()
