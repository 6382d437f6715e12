"""Helpers for daemon tests: a running in-process Daemon, slow feeds, short waits."""

from __future__ import annotations

import os
import socket
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from aggregator.run.daemon import Daemon
from tests.conftest import config_text


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll a condition briefly; fail (not hang) when it never comes true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rewrite(path: Path, sources: list[dict[str, Any]], **settings: Any) -> None:
    """Replace a config file's sources (and some settings) so a watcher sees it change,
    even within one mtime tick. Settings not given keep their current values."""
    before = path.stat().st_mtime_ns
    settings = {**tomllib.loads(path.read_text(encoding="utf-8")).get("settings", {}), **settings}
    path.write_text(config_text(sources, **settings), encoding="utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def running(config_path: Path, **kwargs: Any) -> Iterator[Daemon]:
    """A started Daemon on a free port that reloads quickly; always stopped."""
    kwargs.setdefault("watch_interval", 0.05)
    kwargs.setdefault("stop_timeout", 5.0)
    daemon = Daemon(config_path, port=0, **kwargs)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


class SlowFeed:
    """A feed handler for tests/feedserver.py that holds each request until released.

    Counts requests in flight, so a test can see whether two polls of one
    source ever overlapped.
    """

    def __init__(self, body: bytes, hold: float = 20.0) -> None:
        self.body = body
        self.hold = hold
        self.release = threading.Event()
        self.started = threading.Event()
        self.active = 0
        self.max_active = 0
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.active += 1
            self.count += 1
            self.max_active = max(self.max_active, self.active)
        self.started.set()
        try:
            self.release.wait(self.hold)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            handler.send_header("Content-Length", str(len(self.body)))
            handler.end_headers()
            handler.wfile.write(self.body)
        except OSError:
            pass  # the client gave up (a daemon that stopped without waiting)
        finally:
            with self._lock:
                self.active -= 1
