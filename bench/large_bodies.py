"""Memory of a poll whose sources all answer with large documents at once.

    python -m bench.large_bodies [--sources 150] [--mib 6] [--daemon]

Each source (on 50 loopback hosts) serves a valid RSS document of about MIB MiB,
which is parsed in a separate process, as any document over parse_inline_max_bytes
is. `aggregator poll --all --no-publish` (with --daemon: `aggregator run`, until
every source has been polled once) runs with default settings, and again with
max_bytes_in_flight raised so far that it never binds (what every fetch in flight
could hold without the budget); the JSON lines give each run's seconds and the peak
PSS of its process tree (the daemon's: its parse processes included).
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.commands import AGGREGATOR, run
from bench.daemon import free_port
from bench.runs import TreeMemory, compiled_as_installed, write_config

HOSTS = 50
UNBOUND = 1 << 40  # bytes: more than any run here holds


def document(mib: int) -> bytes:
    """An RSS document of about `mib` MiB: items with long descriptions."""
    items = []
    for n in range(mib * 4):
        text = f"第{n}段" + "新闻内容" * 21_800  # ~256 KiB of UTF-8
        items.append(
            f"<item><title>条目 {n}</title>"
            f"<link>http://big.example.cn/a?infoCode=NW2021122400000{n:05d}</link>"
            f"<guid>big-{n}</guid><description>{text}</description></item>"
        )
    body = "".join(items)
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>big</title><link>http://big.example.cn/</link>{body}</channel></rss>"
    ).encode()


@contextmanager
def servers(body: bytes) -> Iterator[list[str]]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    running = [ThreadingHTTPServer((f"127.0.0.{i + 1}", 0), Handler) for i in range(HOSTS)]
    for server in running:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield [f"http://127.0.0.{i + 1}:{s.server_address[1]}" for i, s in enumerate(running)]
    finally:
        for server in running:
            server.shutdown()
            server.server_close()


def measure(sources: int, mib: int, budget: int | None, daemon: bool) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-large-") as name,
        servers(document(mib)) as bases,
    ):
        folder = Path(name)
        config = write_config(folder, {"feeds": sources, "entries": 0, "bases": bases})
        extra = f"port = {free_port()}\n" + (f"max_bytes_in_flight = {budget}\n" if budget else "")
        text = config.read_text(encoding="utf-8").replace("[settings]\n", f"[settings]\n{extra}", 1)
        config.write_text(text, encoding="utf-8")
        run(["config", "check", "--config", str(config)])
        if daemon:
            result = run_daemon(config, folder / "aggregator.db", sources)
        else:
            result = run(["poll", "--all", "--no-publish", "--config", str(config)], tree=True)
    return {
        "command": "run" if daemon else "poll --all --no-publish",
        "sources": sources,
        "document_mib": mib,
        "max_bytes_in_flight": "default" if budget is None else budget,
        "seconds": round(result["seconds"], 2),
        "peak_tree_pss_mb": round(result["peak_tree_pss_mb"], 1),
    }


def polled(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM sources WHERE last_poll_at IS NOT NULL"
            ).fetchone()
    except sqlite3.Error:  # not made yet
        return 0
    return int(count)


def run_daemon(config: Path, database: Path, sources: int) -> dict[str, float]:
    """`aggregator run` from its start until every source has been polled once."""
    started = time.perf_counter()
    command = [AGGREGATOR, "--log-level", "warning", "run", "--config", str(config)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as daemon:
        with TreeMemory(daemon.pid) as memory:
            while polled(database) < sources:
                if daemon.poll() is not None:
                    raise SystemExit(f"the daemon stopped: {daemon.returncode}")
                time.sleep(0.2)
            seconds = time.perf_counter() - started
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=300)
    return {"seconds": seconds, "peak_tree_pss_mb": memory.peak_kb / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_bodies")
    parser.add_argument("--sources", type=int, default=150)
    parser.add_argument("--mib", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--daemon", action="store_true", help="aggregator run, not poll")
    args = parser.parse_args()
    compiled_as_installed()
    for _ in range(args.runs):  # alternating, so a drift of the machine hits both
        for budget in (None, UNBOUND):
            result = measure(args.sources, args.mib, budget, args.daemon)
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
