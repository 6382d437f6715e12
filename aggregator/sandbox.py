"""Parse a feed under a time and a memory limit.

The DOCTYPE screen (xmlguard) stops the entity attacks we know; this is the
backstop for the ones we do not, and for documents that are simply huge.
Small documents without a DTD, the everyday case, are parsed right here:
nothing in them can expand, and parsing them costs milliseconds. Anything
else is parsed in a child process forked from a small "forkserver" process
(so no lock held by one of the daemon's threads is inherited), with an
address-space limit set in the child and a wall-clock limit enforced here:
the child is killed when it runs out of time, and fails with MemoryError
when it runs out of memory. Either way the poll gets a ParseError.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from aggregator.errors import ParseError
from aggregator.models import ParsedFeed
from aggregator.parse import FieldLimits, Prepared, parse_prepared, prepare

MIB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """Limits on one parse; see the [settings] keys of the same names."""

    fields: FieldLimits = field(default_factory=FieldLimits)
    timeout: float = 60.0  # seconds of wall-clock time for one parse in a worker
    memory: int = 512 * MIB  # bytes a worker may allocate beyond its start-up size
    inline_max_bytes: int = 1 * MIB  # larger documents always go to a worker

    @classmethod
    def from_settings(cls, settings: Any) -> ParseLimits:
        return cls(
            fields=FieldLimits(
                title=settings.max_title_length,
                summary=settings.max_summary_length,
                content=settings.max_content_length,
                entries=settings.max_entries,
            ),
            timeout=settings.parse_timeout,
            memory=settings.parse_memory_limit,
            inline_max_bytes=settings.parse_inline_max_bytes,
        )


@dataclass(frozen=True)
class WorkerReport:
    feed: ParsedFeed | None
    error: str | None
    max_rss_kib: int  # the worker's peak resident size, for measurements


_context_lock = threading.Lock()
_context: Any = None


def _forkserver() -> Any:
    """The multiprocessing context, its server preloaded with the parser."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["aggregator.parse"])
            _context = context
        return _context


def _address_space() -> int:
    """This process's current virtual size in bytes (Linux), 0 when unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_self(memory: int, timeout: float) -> None:
    limit = _address_space() + memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # A CPU-time ceiling too, in case the parent is gone and cannot kill us.
    cpu = int(timeout) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


def _child(
    conn: Connection,
    prepared: Prepared,
    url: str,
    timezone: str,
    seen_at: datetime,
    limits: ParseLimits,
) -> None:
    """Runs in the worker process."""
    feed: ParsedFeed | None = None
    error: str | None = None
    try:
        _limit_self(limits.memory, limits.timeout)
        feed = parse_prepared(
            prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits.fields
        )
    except MemoryError:
        feed = None
        error = f"the parse needed more than the {limits.memory // MIB} MiB memory limit"
    except ParseError as exc:
        error = str(exc)
    except Exception as exc:  # a parser bug: report it, never hang the parent
        error = f"the parser failed: {type(exc).__name__}: {exc}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        conn.send(WorkerReport(feed, error, peak))
    except MemoryError:
        conn.send(WorkerReport(None, "the parse result is too large to return", peak))
    conn.close()


def run_in_worker(
    prepared: Prepared,
    *,
    url: str,
    timezone: str,
    seen_at: datetime,
    limits: ParseLimits,
) -> WorkerReport:
    """Parse in a child process under the limits; the child is always reaped."""
    context = _forkserver()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(sender, prepared, url, timezone, seen_at, limits),
        name="aggregator-parse",
        daemon=True,
    )
    try:
        process.start()
        sender.close()
        if not receiver.poll(limits.timeout):
            return WorkerReport(None, f"the parse took longer than {limits.timeout:g} s", 0)
        try:
            report: WorkerReport = receiver.recv()
        except (EOFError, OSError):
            return WorkerReport(None, "the parser process died (out of memory?)", 0)
        return report
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
        process.close()


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
) -> ParsedFeed:
    """parse_feed, with a time and memory limit where the document could need one."""
    limits = limits or ParseLimits()
    prepared = prepare(body, content_type)
    if not needs_worker(prepared, limits):
        return parse_prepared(
            prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits.fields
        )
    report = run_in_worker(prepared, url=url, timezone=timezone, seen_at=seen_at, limits=limits)
    if report.feed is None:
        raise ParseError(report.error or "the parse failed")
    return report.feed
