"""Signals read by the main thread in its own code (aggregator.run.signals).

A handler that sets a threading.Event can hang for good: Python runs it in the main
thread between two bytecodes, possibly while that thread holds the event's lock inside
Event.wait. The child processes below take that lock again and again while the signal
comes, and must still stop.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from aggregator.run.signals import SignalInbox
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.test_lifecycle import start

ROOT = Path(__file__).resolve().parent.parent

LOOP = """
import signal, sys, threading
from aggregator.run.signals import SignalInbox

stopping = threading.Event()
with SignalInbox((signal.SIGTERM,)) as inbox:
    print("ready", flush=True)
    while not stopping.wait(0):  # holds the event's lock a moment each turn
        for signum in inbox.wait(0):
            stopping.set()
sys.exit(3)
"""


def test_a_signal_at_any_moment_of_the_wait_is_read_and_never_hangs() -> None:
    hung = []
    for attempt in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", LOOP], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(0.0007 * (attempt % 9))  # a spread of moments inside the loop
        child.send_signal(signal.SIGTERM)
        try:
            assert child.wait(10) == 3  # left the loop and exited on its own
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            hung.append(attempt)
    assert hung == []


def test_the_inbox_returns_signals_in_order_and_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with SignalInbox((signal.SIGUSR1, signal.SIGUSR2)) as inbox:
        assert inbox.wait(0) == []
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert inbox.wait(5) == [signal.SIGUSR2, signal.SIGUSR1]
        assert inbox.wait(0.01) == []
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_running_daemon_reloads_on_sighup_and_stops_on_sigterm(
    server: FeedServer, write_config: Any
) -> None:
    url = server.set("/a.xml", rss([Item("NW202112242224484383", "三秦都市报")]))
    source = {"id": "a", "name": "甲", "url": url, "category": "news", "interval": 600}
    path = write_config([source], publish_delay=0.05)
    process = start(path)
    try:
        log = Log(process)
        log.until("source a: 1 new")
        process.send_signal(signal.SIGHUP)
        log.until("config reloaded: 1 sources")
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        log.until("signal SIGTERM: stopping")
    finally:
        if process.poll() is None:
            process.kill()


class Log:
    """A process's stderr, read line by line on a thread of its own."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process.stderr,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the log ended before {text!r}")
            if text in line:
                return
        raise AssertionError(f"no {text!r} in the log after {timeout}s")
