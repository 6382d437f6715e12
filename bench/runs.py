"""One measured run, in a fresh process: ``python -m bench.runs SIDE SCENARIO JSON``.

SIDE is "ours" (what `aggregator poll` runs once its config is loaded:
pollrun.poll_run with the config's settings) or "reader" (lemon24/reader,
update_feeds). It prints one JSON line with the timing and the process's memory, so
every run starts cold and peak RSS belongs to that run alone. The whole-command
runs (bench/__main__.py) start `aggregator poll --all --no-publish` and reader's
READER_UPDATE script instead; SCENARIO "setup" prepares reader's database for them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

Params = dict[str, Any]


def compiled_as_installed() -> None:
    """Both sides start from compiled bytecode, as after `pip install` (which compiles
    what it installs): our editable install is compiled here, and the runs started
    from now on may keep bytecode even where PYTHONDONTWRITEBYTECODE is set."""
    import compileall

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "aggregator", quiet=1)


def rss_mb() -> float:
    """Current resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _descendants(pid: int) -> list[int]:
    """The process's children and theirs; a process that exits meanwhile has none."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:
        return []
    found = []
    for children in tasks:
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


def write_config(folder: Path, params: Params) -> Path:
    """The config file a user would write for these feeds: default settings (only where
    the database and the feeds go), Chinese category and tag names with no pinned slug,
    the share-code rule of the corpus' links."""
    lines = [
        "[settings]",
        f'database = "{folder / "aggregator.db"}"',
        f'output_dir = "{folder / "feeds"}"',
    ]
    for i, url in enumerate(feed_urls(params)):
        lines += [
            "[[sources]]",
            f'id = "s{i:05d}"',
            f'name = "第{i}版"',
            f'url = "{url}"',
            'category = "三秦都市报"',
            'tags = ["三秦都市报新闻"]',
            'share_code = { param = "infoCode" }',
        ]
    path = folder / "sources.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Ours:
    """What `aggregator poll --all --no-publish` does once its config is loaded and its
    store open: poll_run with the config's settings (without the line per source the
    command prints, which a cron job sends to a log)."""

    def __init__(self, params: Params, folder: Path) -> None:
        from aggregator.config.loader import load_config
        from aggregator.fetch.fetcher import Fetcher
        from aggregator.fetch.request import Limits
        from aggregator.store import open_store

        # Imported now, with the feed reader a poll loads on its first document, as
        # Reader imports reader and its feedparser before the clock starts.
        importlib.import_module("aggregator.run.pollrun")
        importlib.import_module("aggregator.parse.kinds").load_readers(["feed"])
        self.params = params
        path = params.get("config") or write_config(folder, params)
        # As in the whole-command runs: the config checked first (which works its slugs
        # out and keeps them), so that loading it here needs no word segmenter either.
        aggregator = str(Path(sys.executable).parent / "aggregator")
        subprocess.run(
            [aggregator, "config", "check", "--config", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.config = load_config(path)
        settings = self.config.settings
        self.sources = list(self.config.enabled_sources)
        self.store = open_store(settings.database)
        self.store.sync_sources(self.config.sources)
        self.fetcher = Fetcher(Limits.from_settings(settings), settings.user_agent)

    def poll(self, sources: list[Any] | None = None) -> int:
        from aggregator.parse.limits import ParseLimits
        from aggregator.run.pollrun import poll_run  # imported by __init__

        settings = self.config.settings
        outcomes = poll_run(
            sources or self.sources,
            self.store,
            self.fetcher,
            settings.workers,
            limits=ParseLimits.from_settings(settings),
        )
        failed = [o for o in outcomes if o.result in ("error", "gone")]
        if failed:
            raise SystemExit(f"{len(failed)} polls failed, e.g. {failed[0].error}")
        return len(outcomes)

    def poll_first(self) -> None:
        self.poll(self.sources[:1])


# --- reader's side -----------------------------------------------------------------------

# reader as its users run it: its own (vendored) feedparser, update_feeds(workers=N).
# scheduled=False polls every feed now, as `aggregator poll --all` does (reader 3.x
# otherwise skips feeds not yet due, e.g. everything right after a first poll).
READER_UPDATE = (
    "import sys\n"
    "from reader import make_reader\n"
    "make_reader(sys.argv[1]).update_feeds(workers=int(sys.argv[2]), scheduled=False)\n"
)


class Reader:
    def __init__(self, params: Params, folder: Path) -> None:
        from reader import make_reader

        self.params = params
        self.urls = feed_urls(params)
        self.reader = make_reader(params.get("database") or str(folder / "reader.sqlite"))
        for url in self.urls:
            self.reader.add_feed(url, exist_ok=True)

    def poll(self, sources: list[Any] | None = None) -> int:
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


def setup(side: Ours | Reader) -> dict[str, Any]:
    """Prepare a reader database for a whole-process run: feeds added, and polled once
    when the run to come is a second poll."""
    if side.params.get("then") == "second":
        side.poll()
    return {}


SCENARIOS: dict[str, Callable[[Ours | Reader], dict[str, Any]]] = {
    "setup": setup,
    "first": first,
    "second": second,
    "changed": changed,
    "cycles": cycles,
}


def main() -> None:
    side_name, scenario, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    params = json.loads(raw)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        if scenario == "publish":
            from bench.publishing import measure

            result = measure(params, Path(folder))
        else:
            side: Ours | Reader = (Ours if side_name == "ours" else Reader)(params, Path(folder))
            result = SCENARIOS[scenario](side)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
