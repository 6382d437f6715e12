"""What a server sees of us, and the fetcher's own defences, on real sockets."""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli
import pytest

from aggregator import PROJECT_URL
from aggregator.config.loader import load_config
from aggregator.errors import FetchError
from aggregator.fetch.decoding import STEP, BoundedDecoder
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.guard import is_private_address, is_private_host
from aggregator.fetch.request import Limits
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.hostile import (
    HostileServer,
    bomb,
    compressed,
    concurrency_probe,
    length_lie,
    redirect,
    respond,
)
from tests.multifetch import fetch_way  # noqa: F401  (a fixture)

# Every test here runs twice: fetch() on its own, and through fetch_many.
pytestmark = pytest.mark.usefixtures("fetch_way")

FEED = rss([Item("NW202112240300260001", "凝神聚力保畅通")])


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer(lifetime=60) as server:
        yield server


def test_request_headers_user_agent_accept_and_per_source_headers(
    hostile: HostileServer, write_config: Any, clock: Clock
) -> None:
    hostile.routes["/feed.xml"] = respond(
        FEED, headers={"ETag": '"v1"', "Last-Modified": "Fri, 24 Dec 2021 03:00:26 GMT"}
    )
    config = load_config(
        write_config(
            [
                {
                    "id": "s",
                    "name": "s",
                    "url": hostile.url("/feed.xml"),
                    "category": "c",
                    "headers": {"X-Api-Key": "k-123", "Referer": "http://finews.example.cn/"},
                }
            ],
            per_host_limit=3,
        )
    )
    limits = Limits.from_settings(config.settings)
    assert limits.per_host == 3
    with SqliteStore(config.settings.database) as store, Fetcher(limits) as fetcher:
        source = config.sources[0]
        assert poll_source(source, store, fetcher, clock=clock).result == "ok"
        clock.advance(3600)
        poll_source(source, store, fetcher, clock=clock)
    sent = hostile.last_headers("/feed.xml")
    assert PROJECT_URL in sent["user-agent"] and sent["user-agent"].startswith("aggregator/")
    for media_type in ("application/atom+xml", "application/rss+xml", "application/xml"):
        assert media_type in sent["accept"]
    assert {"gzip", "deflate", "br"} <= {e.strip() for e in sent["accept-encoding"].split(",")}
    assert sent["x-api-key"] == "k-123"
    assert sent["referer"] == "http://finews.example.cn/"
    # The second poll is conditional.
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Fri, 24 Dec 2021 03:00:26 GMT"


def test_per_host_limit_caps_concurrent_requests(hostile: HostileServer) -> None:
    seen: list[int] = []
    lock = threading.Lock()
    probe = concurrency_probe(FEED, 0.3, seen, lock)  # one counter for all six paths
    for n in range(6):
        hostile.routes[f"/f{n}.xml"] = probe
    errors: list[Exception] = []
    with Fetcher(Limits(per_host=2)) as fetcher:

        def fetch(n: int) -> None:
            try:
                fetcher.fetch(hostile.url(f"/f{n}.xml"))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert len(seen) == 6
    assert max(seen) == 2  # parallel, but never more than two at once on one host


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compressed_feeds_are_decoded(hostile: HostileServer, encoding: str) -> None:
    packed = {
        "gzip": gzip.compress(FEED),
        "deflate": zlib.compress(FEED),
        "br": brotli.compress(FEED),
    }[encoding]
    hostile.routes["/c.xml"] = compressed(packed, encoding)
    with Fetcher() as fetcher:
        assert fetcher.fetch(hostile.url("/c.xml")).body == FEED


def test_redirects_to_other_schemes_are_refused(hostile: HostileServer) -> None:
    hostile.routes["/to-file"] = redirect("file:///etc/passwd")
    hostile.routes["/to-ftp"] = redirect("ftp://127.0.0.1/feed.xml", 302)
    with Fetcher() as fetcher:
        for path in ("/to-file", "/to-ftp"):
            with pytest.raises(FetchError, match="only http and https"):
                fetcher.fetch(hostile.url(path))


def test_a_source_on_loopback_may_redirect_on_loopback(hostile: HostileServer) -> None:
    """Sources configured on private addresses are the operator's choice."""
    hostile.routes["/a"] = redirect(hostile.url("/b"), 302)
    hostile.routes["/b"] = respond(FEED)
    with Fetcher() as fetcher:
        assert fetcher.fetch(hostile.url("/a")).body == FEED


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.0.0.5", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("[::1]", True),
        ("fe80::1%lo", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),
        ("93.184.216.34", False),
        ("1.1.1.1", False),
        ("2606:4700:4700::1111", False),
        ("", False),
        ("finews.example.cn", False),
    ],
)
def test_private_space_is_recognised(address: str, private: bool) -> None:
    assert is_private_address(address) is private


def test_through_a_proxy_the_target_name_is_looked_up_instead() -> None:
    # curl connects to the proxy then, never to the target: the old check stands in.
    assert is_private_host("localhost") and is_private_host("10.1.2.3")
    assert not is_private_host("93.184.216.34")


def _loopback_is_public(address: str) -> bool:
    """A view of private space in which 127.0.0.1 is public, so a redirect from it into
    private space can be seen on loopback."""
    return address != "127.0.0.1" and (address == "127.0.0.2" or is_private_address(address))


def test_a_redirect_from_public_into_private_space_is_refused(hostile: HostileServer) -> None:
    hostile.routes["/a"] = redirect(f"http://127.0.0.2:{hostile.port}/admin", 302)
    hostile.routes["/b"] = redirect(hostile.url("/feed"), 302)
    hostile.routes["/feed"] = respond(FEED)
    with Fetcher(private=_loopback_is_public) as fetcher:
        with pytest.raises(FetchError, match=r"refused redirect .*/admin \(127\.0\.0\.2\)"):
            fetcher.fetch(hostile.url("/a"))
        assert fetcher.fetch(hostile.url("/b")).body == FEED  # public to public
        # The operator may allow it per source.
        with pytest.raises(FetchError, match="cannot connect"):
            fetcher.fetch(hostile.url("/a"), allow_private=True)


class _IPv6Feed(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class _FeedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open for the next request

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(FEED)))
        self.end_headers()
        self.wfile.write(FEED)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_kept_connection_into_private_space_is_not_reused_after_such_a_redirect(
    hostile: HostileServer,
) -> None:
    try:
        private = _IPv6Feed(("::1", 0), _FeedHandler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    threading.Thread(target=private.serve_forever, daemon=True).start()
    inside = f"http://[::1]:{private.server_address[1]}/feed"
    hostile.routes["/a"] = redirect(inside, 302)
    try:
        with Fetcher(private=_loopback_is_public) as fetcher:
            assert fetcher.fetch(inside).body == FEED  # asked for directly: allowed, kept
            with pytest.raises(FetchError, match=r"refused redirect .* \(::1\)"):
                fetcher.fetch(hostile.url("/a"))
    finally:
        private.shutdown()
        private.server_close()


# --- bounded decoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "pack"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda d: zlib.compress(d)[2:-4]),  # raw deflate, as some servers send
        ("br", brotli.compress),
        ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
        ("identity", lambda d: d),
        ("", lambda d: d),
    ],
)
def test_bounded_decoder_round_trips(header: str, pack: Any) -> None:
    data = FEED * 300
    packed = pack(data)
    decoder = BoundedDecoder(header)
    pieces = []
    for start in range(0, len(packed), 1000):  # in network-sized chunks
        pieces += list(decoder.decode(packed[start : start + 1000]))
    pieces += list(decoder.flush())
    assert b"".join(pieces) == data


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_bomb_comes_out_in_small_steps(encoding: str) -> None:
    decoder = BoundedDecoder(encoding)
    produced = 0
    for piece in decoder.decode(bomb(encoding)[:4096]):
        assert len(piece) <= 2 * STEP
        produced += len(piece)
        if produced > 10 * STEP:
            break  # the caller would stop here: the cap is checked between steps
    assert produced > 0


def test_bad_encodings_are_fetch_errors() -> None:
    with pytest.raises(FetchError, match="unsupported Content-Encoding"):
        BoundedDecoder("zstd")
    with pytest.raises(FetchError, match="cannot decode"):
        list(BoundedDecoder("gzip").decode(b"not gzip at all"))
    with pytest.raises(FetchError, match="cannot decode"):
        list(BoundedDecoder("br").decode(b"\xff" * 64))


def test_extra_bytes_after_a_response_never_reach_the_next_fetch(hostile: HostileServer) -> None:
    """A body longer than its Content-Length, connection held open: on a reused
    connection the surplus would be read as the next source's answer. curl drops such
    a connection (see also tests/test_fetch_keepalive.py)."""
    hostile.routes["/lie"] = length_lie(FEED, 200, then_hold=5)
    hostile.routes["/next"] = respond(FEED)
    with Fetcher(Limits(deadline=3)) as fetcher:
        assert fetcher.fetch(hostile.url("/lie")).body == FEED[:200]
        assert fetcher.fetch(hostile.url("/next")).body == FEED


def _one_source(write_config: Any, url: str, interval: str = "30m") -> Any:
    config = load_config(
        write_config([{"id": "s", "name": "s", "url": url, "category": "c", "interval": interval}])
    )
    return config.sources[0], config.settings.database


def test_cache_control_is_a_clamped_lower_bound(
    hostile: HostileServer, write_config: Any, clock: Clock
) -> None:
    source, database = _one_source(write_config, hostile.url("/f.xml"))
    with SqliteStore(database) as store, Fetcher() as fetcher:
        hostile.routes["/f.xml"] = respond(FEED, headers={"Cache-Control": "max-age=7200"})
        outcome = poll_source(source, store, fetcher, clock=clock, rand=lambda: 0.0)
        assert outcome.next_poll == clock.now + timedelta(hours=2)
        clock.advance(7200)
        hostile.routes["/f.xml"] = respond(FEED, headers={"Cache-Control": "max-age=9999999"})
        outcome = poll_source(source, store, fetcher, clock=clock, rand=lambda: 0.0)
        assert outcome.next_poll == clock.now + timedelta(hours=24)  # clamped


def test_feed_hints_are_kept_for_304_answers(
    hostile: HostileServer, write_config: Any, clock: Clock
) -> None:
    hour = clock.now.hour
    skipped = "".join(f"<hour>{(hour + h) % 24}</hour>" for h in range(3, 6))
    body = rss(
        [Item("NW202112240300260001", "凝神聚力保畅通")],
        extra_channel=f"<ttl>180</ttl><skipHours>{skipped}</skipHours>",
    )
    source, database = _one_source(write_config, hostile.url("/f.xml"))

    def answer(conn: Any, request: Any) -> None:
        if request.headers.get("if-none-match") == '"v1"':
            respond(b"", status=304, headers={"ETag": '"v1"'})(conn, request)
        else:
            respond(body, headers={"ETag": '"v1"'})(conn, request)

    hostile.routes["/f.xml"] = answer
    with SqliteStore(database) as store, Fetcher() as fetcher:
        for result in ("ok", "not_modified"):
            outcome = poll_source(source, store, fetcher, clock=clock, rand=lambda: 0.0)
            assert outcome.result == result
            assert outcome.next_poll is not None
            # <ttl> 180 makes it 3 h; hours +3..+5 are skipped, so +6 h.
            assert outcome.next_poll == clock.now + timedelta(hours=6)
            clock.advance(60)


def test_errors_back_off_and_success_resets(
    hostile: HostileServer, write_config: Any, clock: Clock
) -> None:
    source, database = _one_source(write_config, hostile.url("/f.xml"), "10m")
    with SqliteStore(database) as store, Fetcher() as fetcher:
        hostile.routes["/f.xml"] = respond(b"oops", status=500, content_type="text/plain")
        delays = []
        for _ in range(4):
            outcome = poll_source(source, store, fetcher, clock=clock, rand=lambda: 0.0)
            assert outcome.next_poll is not None
            delays.append((outcome.next_poll - clock.now).total_seconds())
            clock.advance(delays[-1])
        assert delays == [450, 900, 1800, 3600]
        row = store.source_rows()[0]
        assert (row["error_count"], row["last_http_status"]) == (4, 500)
        assert "HTTP 500" in row["last_error"]
        hostile.routes["/f.xml"] = respond(FEED)
        outcome = poll_source(source, store, fetcher, clock=clock, rand=lambda: 0.0)
        assert outcome.next_poll == clock.now + timedelta(minutes=10)
        assert store.source_rows()[0]["error_count"] == 0
