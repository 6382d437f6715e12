"""One measured run, in a fresh process: ``python -m bench.runs SIDE SCENARIO JSON``.

SIDE is "ours" (aggregator's real poll path, pollrun.poll_many) or "reader"
(lemon24/reader, update_feeds). It prints one JSON line with the timing and the
process's memory, so every run starts cold and peak RSS belongs to that run alone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

Params = dict[str, Any]


def rss_mb() -> float:
    """Current resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _descendants(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in children.read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


SAMPLE_EVERY = 0.1  # seconds; see TreeMemory


class TreeMemory:
    """The peak, sampled every SAMPLE_EVERY seconds, of the memory of a run's process
    and its worker processes together: the sum of their PSS (shared pages counted
    once, split between the processes sharing them; RSS would count a forked worker's
    pages shared with its parent twice).

    Reading a process's PSS makes the kernel walk its page tables: about 1 ms of CPU
    per 70 MB process, taken from the 2 cores the run has. Sampled every 20 ms, the
    three processes of our first poll cost the driver 0.4-0.55 s of CPU in a 2.5 s
    run (a tenth of the machine) and slowed the run as much; every 100 ms they cost
    0.1 s, with the same peaks (69-73 MB either way).

    The driver samples from outside the run: a sampling thread inside it would be a
    thread `aggregator poll` does not have, and with another thread alive poll_many
    starts its workers by spawn instead of fork."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            total = sum(_pss_kb(pid) for pid in [self.pid, *_descendants(self.pid)])
            self.peak_kb = max(self.peak_kb, total)


def feed_urls(params: Params) -> list[str]:
    bases = params["bases"]
    return [f"{bases[i % len(bases)]}/feeds/{i:05d}.xml" for i in range(params["feeds"])]


def control(params: Params, path: str) -> None:
    with urllib.request.urlopen(params["bases"][0] + path, timeout=60) as response:
        response.read()


# --- our side ------------------------------------------------------------------------


class Ours:
    def __init__(self, params: Params, folder: Path) -> None:
        from aggregator.config.loader import Source
        from aggregator.config.sharecodes import ShareCodeRule
        from aggregator.fetch.fetcher import Fetcher, Limits
        from aggregator.store.sqlite import SqliteStore

        # Imported now, as Reader imports reader before the clock starts.
        importlib.import_module("aggregator.run.pollrun")
        self.params = params
        self.sources = [
            Source(
                id=f"s{i:05d}",
                name=f"第{i}版",
                url=url,
                category="三秦都市报",
                tags=("三秦都市报新闻",),
                share_code=ShareCodeRule("param", "infoCode"),
            )
            for i, url in enumerate(feed_urls(params))
        ]
        self.store = SqliteStore(folder / "bench.db")
        self.store.sync_sources(self.sources)
        self.fetcher = Fetcher(Limits(per_host=4))
        self.processes_used = 1

    def poll(self, sources: list[Any] | None = None) -> int:
        from aggregator.parse.limits import ParseLimits
        from aggregator.run.pollrun import poll_many, processes_for  # imported by __init__

        # The path of `aggregator poll` (the daemon runs the same steps in poll_source):
        # in as many processes as that command would use for this many sources.
        polled = sources or self.sources
        processes = self.params.get("processes") or processes_for(
            self.store, polled, os.cpu_count()
        )
        self.processes_used = max(self.processes_used, processes)
        outcomes = poll_many(
            polled,
            self.store,
            self.fetcher,
            self.params["workers"],
            limits=ParseLimits(),
            processes=processes,
        )
        failed = [o for o in outcomes if o.result in ("error", "gone")]
        if failed:
            raise SystemExit(f"{len(failed)} polls failed, e.g. {failed[0].error}")
        return len(outcomes)

    def poll_first(self) -> None:
        self.poll(self.sources[:1])


# --- reader's side -----------------------------------------------------------------------


class Reader:
    def __init__(self, params: Params, folder: Path) -> None:
        os.environ.setdefault("READER_NO_VENDORED_FEEDPARSER", "1")
        from reader import make_reader

        self.params = params
        self.urls = feed_urls(params)
        self.reader = make_reader(str(folder / "reader.sqlite"))
        for url in self.urls:
            self.reader.add_feed(url)

    def poll(self, sources: list[Any] | None = None) -> int:
        # scheduled=False: poll every feed now, as our side does (reader 3.x otherwise
        # skips feeds not yet due, e.g. everything right after a first poll).
        self.reader.update_feeds(workers=self.params["workers"], scheduled=False)
        return len(self.urls)

    def poll_first(self) -> None:
        self.reader.update_feed(self.urls[0])


# --- scenarios ---------------------------------------------------------------------------


def first(side: Ours | Reader) -> dict[str, Any]:
    started = time.perf_counter()
    side.poll()
    return {"seconds": time.perf_counter() - started}


def second(side: Ours | Reader) -> dict[str, Any]:
    side.poll()
    started = time.perf_counter()
    side.poll()
    return {"seconds": time.perf_counter() - started}


def changed(side: Ours | Reader) -> dict[str, Any]:
    side.poll()
    control(side.params, "/_add?feed=0")
    started = time.perf_counter()
    side.poll_first()
    return {"seconds": time.perf_counter() - started}


def cycles(side: Ours | Reader) -> dict[str, Any]:
    side.poll()
    series = []
    churn = max(1, side.params["feeds"] // 10)
    for _ in range(side.params.get("cycles", 10)):
        control(side.params, f"/_churn?n={churn}")
        side.poll()
        series.append(round(rss_mb(), 1))
    return {"rss_series": series}


SCENARIOS: dict[str, Callable[[Ours | Reader], dict[str, Any]]] = {
    "first": first,
    "second": second,
    "changed": changed,
    "cycles": cycles,
}


def main() -> None:
    side_name, scenario, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    params = json.loads(raw)
    used = 1  # processes that polled
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        if scenario == "publish":
            from bench.publishing import measure

            result = measure(params, Path(folder))
        else:
            side: Ours | Reader = (Ours if side_name == "ours" else Reader)(params, Path(folder))
            result = SCENARIOS[scenario](side)
            used = getattr(side, "processes_used", 1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["processes"] = used
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
