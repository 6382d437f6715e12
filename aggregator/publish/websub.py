"""Tell a WebSub hub that feeds changed (the publisher's "publish" ping).

The W3C WebSub recommendation leaves the ping to the hub; every public hub
accepts a form POST ``hub.mode=publish&hub.url=<topic>``. Pings go through a
background thread: publishing never waits for the hub, a failed ping is
logged and retried with growing delays, and the same topic waiting twice is
sent once.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import IO
from urllib.parse import urlencode

from aggregator.config.loader import DEFAULT_USER_AGENT

log = logging.getLogger("aggregator.websub")

DEFAULT_DELAYS = (10.0, 60.0, 300.0, 1800.0, 3600.0)  # seconds before retries 1, 2, ...

_Ping = tuple[str, str, int]  # (hub, topic, attempt)


class _KeepPostOnRedirect(urllib.request.HTTPRedirectHandler):
    """A 307 or 308 repeats the POST at the new address (urllib gives up on them);
    a 301, 302 or 303 turns it into a GET, as browsers do."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if code in (307, 308) and req.get_method() == "POST":
            return urllib.request.Request(
                newurl, data=req.data, headers=dict(req.header_items()), method="POST"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def post_form(url: str, form: dict[str, str], user_agent: str, timeout: float) -> int:
    """POST a form and return the answer's status; raises OSError or HTTPException when
    there is no answer."""
    request = urllib.request.Request(
        url,
        data=urlencode(form).encode("ascii"),
        headers={"User-Agent": user_agent},
        method="POST",
    )
    opener = urllib.request.build_opener(_KeepPostOnRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:  # an answer, not a failure to get one
        exc.close()
        return exc.code


class HubNotifier:
    def __init__(
        self,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: float = 10.0,
        delays: Sequence[float] = DEFAULT_DELAYS,
    ) -> None:
        self._user_agent = user_agent
        self._timeout = timeout
        self._delays = tuple(delays)
        self._queue: queue.Queue[_Ping | None] = queue.Queue()
        self._waiting: set[tuple[str, str]] = set()
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="websub-ping", daemon=True)
        self._thread.start()
        self.delivered: list[tuple[str, str]] = []  # (hub, topic), for status and tests
        self.given_up: list[tuple[str, str]] = []

    def notify(self, hub: str, topics: Iterable[str]) -> None:
        """Queue a publish ping for each topic URL; returns at once."""
        for topic in topics:
            self._enqueue((hub, topic, 0))

    def _enqueue(self, ping: _Ping) -> None:
        with self._lock:
            if self._closed or (ping[0], ping[1]) in self._waiting:
                return
            self._waiting.add((ping[0], ping[1]))
            self._busy += 1
        self._queue.put(ping)

    def _run(self) -> None:
        while True:
            ping = self._queue.get()
            if ping is None:
                return
            hub, topic, attempt = ping
            with self._lock:
                self._waiting.discard((hub, topic))
            try:
                self._send(hub, topic, attempt)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._idle.notify_all()

    def _send(self, hub: str, topic: str, attempt: int) -> None:
        try:
            form = {"hub.mode": "publish", "hub.url": topic}
            status = post_form(hub, form, self._user_agent, self._timeout)
            if 200 <= status < 300:
                log.info("hub %s notified of %s", hub, topic)
                with self._lock:
                    self.delivered.append((hub, topic))
                return
            problem = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if attempt >= len(self._delays):
            log.error(
                "hub %s: giving up on %s after %d tries (%s)", hub, topic, attempt + 1, problem
            )
            with self._lock:
                self.given_up.append((hub, topic))
            return
        delay = self._delays[attempt]
        log.warning("hub %s: ping for %s failed (%s); retrying in %gs", hub, topic, problem, delay)
        self._later(delay, (hub, topic, attempt + 1))

    def _later(self, delay: float, ping: _Ping) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._enqueue(ping)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent (retries waiting on a timer aside)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (bounded by timeout), drop pending retries, stop."""
        self.wait_idle(timeout)
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        self._queue.put(None)
        self._thread.join(timeout)
