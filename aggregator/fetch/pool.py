"""The connections a thread keeps alive, its curl handles, and the per-host slots."""

from __future__ import annotations

import contextlib
import queue
import select
import socket
from collections.abc import Iterator

import pycurl

from aggregator.fetch.urls import Origin

# Idle connections kept per thread: enough for every host a thread polls in
# turn, few enough that threads x connections stays far below the fd limit.
MAX_CONNECTIONS_PER_THREAD = 16


class Slots:
    """At most n fetches in flight to one host: n tokens in a queue, a C-level
    blocking primitive (threading.Semaphore is Python code, run on every fetch)."""

    __slots__ = ("_tokens",)

    def __init__(self, n: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(max(1, n)):
            self._tokens.put(None)

    def take(self, wait: float = 0.0) -> bool:
        """A token if one is free within `wait` seconds (none: at once or not at all)."""
        try:
            if wait > 0:
                self._tokens.get(timeout=wait)
            else:
                self._tokens.get_nowait()
        except queue.Empty:
            return False
        return True

    def give_back(self) -> None:
        self._tokens.put(None)


# curl itself refuses to reuse an idle connection with unread input only once it has
# been idle for about a second; below that, Pool.clean looks.


@contextlib.contextmanager
def _borrowed(fd: int, local: int, remote: int) -> Iterator[socket.socket | None]:
    """curl's socket `fd` as a Python socket for a moment, or None when that number
    is closed or now belongs to another connection; the descriptor stays curl's."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # closed since: curl will not reuse it
        yield None
        return
    try:
        try:
            same = sock.getsockname()[1] == local and sock.getpeername()[1] == remote
        except OSError:  # not connected any more
            same = False
        yield sock if same else None
    finally:
        sock.detach()


class Pool:
    """The connections a handle keeps (an easy handle's, or a multi handle's pool), by
    origin. curl may reuse any idle one for the next transfer to that origin, so all
    of them are looked at first."""

    __slots__ = ("known",)

    def __init__(self) -> None:
        self.known: dict[Origin, dict[int, tuple[int, int]]] = {}  # fd -> local, remote port

    def remember(self, origin: Origin, curl: pycurl.Curl) -> None:
        """After a transfer, while its handle is still in the multi: its connection."""
        try:
            fd = curl.getinfo(pycurl.ACTIVESOCKET)
            ports = (curl.getinfo(pycurl.LOCAL_PORT), curl.getinfo(pycurl.PRIMARY_PORT))
        except pycurl.error:
            return
        if fd == -1:
            return
        known = self.known.setdefault(origin, {})
        known.pop(fd, None)
        known[fd] = ports
        if len(known) > MAX_CONNECTIONS_PER_THREAD:  # long closed, most likely
            del known[next(iter(known))]

    def clean(self, origin: Origin, busy: frozenset[int]) -> bool:
        """Shut down every idle connection to the origin that has bytes waiting nobody
        asked for (they would be read as the next answer): sending on it then fails,
        and curl connects afresh. True when there was one. `busy`: the sockets of
        transfers under way, whose answers are not unasked."""
        known = self.known.get(origin)
        idle = [fd for fd in known or () if fd not in busy]
        if not known or not idle:
            return False
        try:  # the common case, nothing to read, in one cheap call
            readable = select.select(idle, (), (), 0)[0]
        except (OSError, ValueError):  # one closed, or a number too high for select
            readable = idle
        found = False
        for fd in readable:
            local, remote = known.pop(fd)
            with _borrowed(fd, local, remote) as sock:
                if sock is None:  # closed, or the number is another socket's now
                    continue
                known[fd] = (local, remote)
                with contextlib.suppress(OSError):  # (nothing waiting: EAGAIN)
                    if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                        sock.shutdown(socket.SHUT_RDWR)
                        del known[fd]
                        found = True
        return found


def fresh_if_tainted(
    handle: pycurl.Curl, pool: Pool, origin: Origin, busy: frozenset[int] = frozenset()
) -> None:
    """Before a request: a kept connection with unasked bytes waiting is shut down, and
    this request gets a new one rather than relying on curl's retry after a failed send."""
    handle.setopt(pycurl.FRESH_CONNECT, 1 if pool.clean(origin, busy) else 0)


class Session:
    """A thread's curl handle, and the connections it keeps."""

    __slots__ = ("curl", "pool")

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.pool = Pool()


class MultiSession:
    """A thread's curl multi handle for fetch_many: one connection pool for all its
    transfers, and easy handles kept between calls, so connections stay alive."""

    __slots__ = ("multi", "pool", "running", "spare")

    def __init__(self, multi: pycurl.CurlMulti) -> None:
        self.multi = multi
        self.running = False
        self.spare: list[pycurl.Curl] = []
        self.pool = Pool()
