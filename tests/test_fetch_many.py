"""Fetcher.fetch_many: many fetches in flight from one thread (curl's multi interface).

Each fetch on its own keeps every promise fetch() keeps: tests/test_hostile.py,
test_fetch_keepalive.py and test_fetch_politeness.py run through it too (see
tests/multifetch.py). These check what only many at once can show."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from aggregator.errors import FetchError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import FetchRequest, Limits
from aggregator.models import FetchResult
from tests.feeds import Item, rss
from tests.feedserver import FeedServer
from tests.hostile import HostileServer, concurrency_probe, respond

FEED = rss([Item("NW202112240300260001", "凝神聚力保畅通")])


def fetch_all(
    fetcher: Fetcher, requests: dict[str, FetchRequest], in_flight: int
) -> dict[str, FetchResult | FetchError]:
    found: dict[str, FetchResult | FetchError] = {}
    for key, result in fetcher.fetch_many(requests.items(), in_flight):
        assert key not in found  # one answer per request
        found[key] = result
    return found


def test_the_host_limit_and_the_in_flight_budget_are_kept() -> None:
    with HostileServer(lifetime=60) as hostile:
        check_limits(hostile)


def check_limits(hostile: HostileServer) -> None:
    seen: list[int] = []
    probe = concurrency_probe(FEED, 0.2, seen, threading.Lock())  # one counter for all
    for n in range(8):
        hostile.routes[f"/f{n}.xml"] = probe
    requests = {f"f{n}": FetchRequest(hostile.url(f"/f{n}.xml")) for n in range(8)}
    with Fetcher(Limits(per_host=2)) as fetcher:
        found = fetch_all(fetcher, requests, in_flight=8)
    assert {key: getattr(r, "body", r) for key, r in found.items()} == {k: FEED for k in requests}
    assert max(seen) == 2  # in flight together, never more than two on the host
    seen.clear()
    with Fetcher(Limits(per_host=8)) as fetcher:
        fetch_all(fetcher, requests, in_flight=3)
    assert max(seen) == 3  # the budget, when the host would allow more


def test_a_host_slot_held_by_another_thread_is_waited_for() -> None:
    """Another thread's fetch() holds the host's only slot: fetch_many waits for it."""
    seen: list[int] = []
    with HostileServer(lifetime=60) as hostile:
        hostile.routes["/slow.xml"] = concurrency_probe(FEED, 0.5, seen, threading.Lock())
        hostile.routes["/feed.xml"] = respond(FEED)
        url = hostile.url("/feed.xml")
        with Fetcher(Limits(per_host=1)) as fetcher:
            other = threading.Thread(target=fetcher.fetch, args=(hostile.url("/slow.xml"),))
            other.start()
            while not seen:  # the other thread's request is under way: the slot is taken
                time.sleep(0.01)
            found = fetch_all(fetcher, {"a": FetchRequest(url), "b": FetchRequest(url)}, 2)
            other.join()
    assert all(isinstance(r, FetchResult) and r.body == FEED for r in found.values())


def test_waiting_for_a_host_slot_counts_towards_the_deadline(server: FeedServer) -> None:
    url = server.set("/feed.xml", FEED)
    with Fetcher(Limits(per_host=1, deadline=0.3)) as fetcher:
        held = fetcher.slot("127.0.0.1")  # as by another thread's fetch, too long
        assert held.take()
        try:
            found = fetch_all(fetcher, {"a": FetchRequest(url)}, 2)
        finally:
            held.give_back()
        assert fetcher.fetch(url).body == FEED  # the slot is free again
    assert isinstance(found["a"], FetchError) and "0.3 s deadline" in str(found["a"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_each_fetch_ends_on_its_own(server: FeedServer, tmp_path: Path) -> None:
    """Answers, redirects, errors and file: URLs mixed in one call."""
    feed_url = server.set("/feed.xml", FEED)
    server.set("/old.xml", status=301, headers={"Location": "/feed.xml"}, validators=False)
    server.set("/gone.xml", status=410, validators=False)
    local = tmp_path / "local.xml"
    local.write_bytes(FEED)
    requests = {
        "feed": FetchRequest(feed_url),
        "moved": FetchRequest(server.url("/old.xml")),
        "missing": FetchRequest(server.url("/missing.xml")),
        "gone": FetchRequest(server.url("/gone.xml")),
        "refused": FetchRequest(f"http://127.0.0.1:{_closed_port()}/feed.xml"),
        "file": FetchRequest(local.as_uri()),
        "ftp": FetchRequest("ftp://127.0.0.1/feed.xml"),
    }
    with Fetcher() as fetcher:
        found = fetch_all(fetcher, requests, in_flight=4)
        assert isinstance(found["feed"], FetchResult) and found["feed"].body == FEED
        again = fetch_all(fetcher, {"feed": FetchRequest(feed_url, etag=found["feed"].etag)}, 4)
    moved = found["moved"]
    assert isinstance(moved, FetchResult) and moved.body == FEED
    assert moved.moved_to == feed_url
    assert isinstance(found["missing"], FetchError) and found["missing"].status == 404
    assert isinstance(found["gone"], FetchError) and found["gone"].gone
    assert isinstance(found["refused"], FetchError)
    assert str(found["refused"]).startswith("cannot connect")
    assert isinstance(found["file"], FetchResult) and found["file"].body == FEED
    assert isinstance(found["ftp"], FetchError)
    assert isinstance(again["feed"], FetchResult) and again["feed"].not_modified


def test_answers_on_shared_kept_alive_connections_all_arrive(server: FeedServer) -> None:
    """Transfers share the multi handle's connections. An answer arriving on one in
    use is that transfer's answer, not bytes nobody asked for: a new transfer to the
    same host must leave that connection alone."""
    urls = [server.set(f"/f{n}.xml", FEED + b" " * n) for n in range(200)]
    with Fetcher(Limits(per_host=4)) as fetcher:
        first = fetch_all(fetcher, {u: FetchRequest(u) for u in urls}, in_flight=8)
        conditional = {
            u: FetchRequest(u, etag=r.etag) for u, r in first.items() if isinstance(r, FetchResult)
        }
        second = fetch_all(fetcher, conditional, in_flight=8)
        third = fetch_all(fetcher, conditional, in_flight=8)
    assert [u for u, r in first.items() if isinstance(r, FetchError)] == []
    for answers in (second, third):
        assert len(answers) == len(urls)
        assert all(isinstance(r, FetchResult) and r.not_modified for r in answers.values())


def test_a_caller_that_stops_early_gives_the_host_slots_back(server: FeedServer) -> None:
    urls = [server.set(f"/f{n}.xml", FEED) for n in range(6)]
    with Fetcher(Limits(per_host=1, deadline=5)) as fetcher:
        fetches = fetcher.fetch_many(((u, FetchRequest(u)) for u in urls), in_flight=4)
        next(fetches)
        fetches.close()  # the others are dropped, under way or waiting
        found = fetch_all(fetcher, {u: FetchRequest(u) for u in urls}, in_flight=4)
        assert fetcher.fetch(urls[0]).body == FEED
    assert all(isinstance(r, FetchResult) and r.body == FEED for r in found.values())


def test_one_thread_runs_one_fetch_many_at_a_time(server: FeedServer) -> None:
    url = server.set("/feed.xml", FEED)
    with Fetcher() as fetcher:
        outer = fetcher.fetch_many([(1, FetchRequest(url))], in_flight=1)
        next(outer)
        inner = fetcher.fetch_many([(2, FetchRequest(url))], in_flight=1)
        with pytest.raises(RuntimeError, match="already running"):
            next(inner)
        outer.close()
        assert [key for key, _ in fetcher.fetch_many([(3, FetchRequest(url))], 1)] == [3]
