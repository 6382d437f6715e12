"""The budget of body bytes that a process's fetches hold at once (max_bytes_in_flight):
large answers arriving together wait for room instead of adding up, the fetch that has
held bytes longest never waits (so fetches always end), and a fetch that waits past
its deadline fails with a reason that names the setting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import pytest

from aggregator.errors import FetchError
from aggregator.fetch.budget import BodyBudget
from aggregator.fetch.fetcher import RECEIVE_BUFFER, Fetcher
from aggregator.fetch.request import FetchRequest, Limits
from aggregator.models import FetchResult
from tests.feedserver import FeedServer

MIB = 1 << 20
BODIES = {f"/big{n}.xml": bytes([65 + n]) * MIB for n in range(12)}


def test_the_oldest_holder_never_waits_and_others_wait_for_room() -> None:
    budget = BodyBudget(100)
    budget.take("first", 80)
    assert budget.room_for("second")  # 80 of 100 held
    budget.take("second", 40)
    assert budget.room_for("first")  # spent, but the oldest holder reads on
    assert not budget.room_for("second")
    assert budget.refused == {"second"}
    assert not budget.wait_for_room("second", time.monotonic() + 0.05)
    budget.give_back("first")
    assert budget.used == 40 and budget.peak == 120
    assert budget.room_for("second") and not budget.refused
    budget.give_back("second")
    budget.give_back("never took")  # nothing to give back: no harm
    assert budget.used == 0


def test_a_waiting_holder_goes_on_once_bytes_come_back() -> None:
    budget = BodyBudget(10)
    budget.take("first", 10)
    waited: list[bool] = []
    waiter = threading.Thread(
        target=lambda: waited.append(budget.wait_for_room("second", time.monotonic() + 30))
    )
    waiter.start()
    while not budget.turned_away:
        time.sleep(0.01)
    budget.give_back("first")
    waiter.join(timeout=30)
    assert waited == [True]


def serve_big(server: FeedServer, together: bool = False) -> dict[str, FetchRequest]:
    """Each body at its own path; `together`: none is answered before all are asked for,
    so the bodies arrive at once even on a busy machine."""
    if not together:
        return {path: FetchRequest(server.set(path, body)) for path, body in BODIES.items()}
    everyone = threading.Barrier(len(BODIES), timeout=30)

    def answer_with(body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
        def answer(handler: BaseHTTPRequestHandler) -> None:
            everyone.wait()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/rss+xml")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        return answer

    return {
        path: FetchRequest(server.set(path, handler=answer_with(body)))
        for path, body in BODIES.items()
    }


def within(budget: BodyBudget | None, total: int) -> None:
    """What the fetches held at once: over the budget only by the oldest holder's body
    (which never waits) and one read."""
    assert budget is not None
    assert budget.used == 0  # all given back
    assert budget.turned_away > 0  # the bodies did arrive together
    assert budget.peak <= total + MIB + RECEIVE_BUFFER


def test_fetch_many_pauses_transfers_while_the_budget_is_spent(server: FeedServer) -> None:
    requests = serve_big(server, together=True)
    total = 2 * MIB
    with Fetcher(Limits(per_host=12, bytes_in_flight=total)) as fetcher:
        found = dict(fetcher.fetch_many(requests.items(), in_flight=12))
        within(fetcher.budget, total)
    assert {path: getattr(r, "body", r) for path, r in found.items()} == BODIES


def test_threads_hold_their_bodies_until_done_with_them(server: FeedServer) -> None:
    """As the daemon's poll threads do: each body counts until the poll has read it."""
    requests = serve_big(server)
    total = 2 * MIB
    found: dict[str, bytes | None] = {}
    with Fetcher(Limits(per_host=12, bytes_in_flight=total)) as fetcher:

        def poll(path: str, url: str) -> None:
            with fetcher.holding():
                found[path] = fetcher.fetch(url).body
                time.sleep(0.05)  # reading it, the bytes still held

        threads = [
            threading.Thread(target=poll, args=(path, request.url))
            for path, request in requests.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        within(fetcher.budget, total)
    assert found == BODIES


@pytest.mark.parametrize("many", [False, True], ids=["fetch", "fetch_many"])
def test_waiting_for_room_past_the_deadline_fails_the_fetch(server: FeedServer, many: bool) -> None:
    url = server.set("/big.xml", BODIES["/big0.xml"])
    with Fetcher(Limits(deadline=0.5, bytes_in_flight=MIB)) as fetcher:
        assert fetcher.budget is not None
        fetcher.budget.take("another poll, reading its body", MIB)
        if many:
            outcome = dict(fetcher.fetch_many([("a", FetchRequest(url))], in_flight=1))["a"]
        else:
            with pytest.raises(FetchError) as raised:
                fetcher.fetch(url)
            outcome = raised.value
        assert isinstance(outcome, FetchError), outcome
        assert "for memory" in str(outcome)
        assert "max_bytes_in_flight" in str(outcome)
        fetcher.budget.give_back("another poll, reading its body")
        assert isinstance(fetcher.fetch(url), FetchResult)  # room again


def test_a_holder_waiting_for_a_host_slot_lets_the_slot_holder_read_on(
    server: FeedServer,
) -> None:
    """A poll holding its feed's body fetches an article from the same host, whose one
    slot a fetch waiting for room holds: the poll stands aside in the budget while it
    waits for the slot, so neither waits for the other until a deadline."""
    feed = server.set("/feed.xml", BODIES["/big0.xml"])
    other = server.set("/other.xml", BODIES["/big1.xml"])
    article = server.set("/article.html", b"<p>the article</p>")
    outcomes: dict[str, object] = {}
    with Fetcher(Limits(per_host=1, bytes_in_flight=MIB, deadline=20)) as fetcher:
        budget = fetcher.budget
        assert budget is not None
        feed_read = threading.Event()

        def poll() -> None:
            with fetcher.holding():
                outcomes["feed"] = fetcher.fetch(feed).body
                feed_read.set()
                while not budget.turned_away:  # the other fetch holds the slot, waiting
                    time.sleep(0.01)
                outcomes["article"] = fetcher.fetch(article).body

        def fetch_other() -> None:
            feed_read.wait(timeout=30)
            try:
                outcomes["other"] = fetcher.fetch(other).body
            except FetchError as exc:
                outcomes["other"] = exc

        threads = [threading.Thread(target=poll), threading.Thread(target=fetch_other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert budget.used == 0
    assert outcomes == {
        "feed": BODIES["/big0.xml"],
        "other": BODIES["/big1.xml"],
        "article": b"<p>the article</p>",
    }
