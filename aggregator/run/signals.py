"""Signals read as messages by the main thread, in ordinary code.

The handlers installed here do nothing; the interpreter writes each signal's number to
a socket (signal.set_wakeup_fd), and the main thread reads it from there. A handler that
acted itself (set a threading.Event, logged a line) could hang the daemon for good:
Python runs handlers in the main thread between two bytecodes, which may be while that
thread holds the very lock the handler needs (inside Event.wait, say).
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any


def _noted(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing. The wakeup socket already has the number."""


class SignalInbox:
    """While open (a context manager, in the main thread), the given signals no longer
    act on their own; wait() returns those that arrived."""

    def __init__(self, signums: Iterable[signal.Signals]) -> None:
        self.signums = tuple(signums)
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self._previous_fd = -1
        self._read: socket.socket | None = None
        self._write: socket.socket | None = None

    def __enter__(self) -> SignalInbox:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)  # the interpreter never waits to write a number
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        for signum in self.signums:
            self._previous_handlers[signum] = signal.signal(signum, _noted)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        signal.set_wakeup_fd(self._previous_fd)
        for end in (self._read, self._write):
            if end is not None:
                end.close()
        self._read = self._write = None

    def wait(self, timeout: float) -> list[signal.Signals]:
        """The signals (of ours) that arrived, in order; [] after `timeout` seconds
        without one."""
        assert self._read is not None, "wait() outside the with block"
        poller = select.poll()  # not select.select: no limit on the descriptor's number
        poller.register(self._read, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return []
        try:
            numbers = self._read.recv(256)
        except BlockingIOError:
            return []
        ours = {int(s): s for s in self.signums}
        return [ours[number] for number in numbers if number in ours]
