"""/status and /status.json on the daemon's built-in server, over real HTTP: only for
loopback clients unless allowed, off by a setting (live), and the same facts as
`aggregator status --json`."""

from __future__ import annotations

import gzip
import json
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config.loader import load_config
from aggregator.errors import ConfigError
from aggregator.serve.server import Access, client_addresses
from tests.daemonkit import get, rewrite, running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEMS = [Item("NW202112240805120001", "西安地铁新线路开通试运营", guid="a-1")]


def headers(**values: str) -> Message:
    message = Message()
    for name, value in values.items():
        message[name.replace("_", "-")] = value
    return message


def test_loopback_only_unless_allowed() -> None:
    default = Access()
    assert default.admits(["127.0.0.1"]) and default.admits(["::1"])
    assert default.admits(["::ffff:127.0.0.1"])  # a dual-stack socket's loopback client
    assert not default.admits(["192.0.2.10"]) and not default.admits(["2001:db8::1"])
    allowed = Access(allow=("192.0.2.0/24", "2001:db8::/32"))
    assert allowed.admits(["192.0.2.10"]) and allowed.admits(["2001:db8::1"])
    assert not allowed.admits(["198.51.100.1"])
    assert not Access().admits(["not an address"])


def test_addresses_a_proxy_forwarded_count_too() -> None:
    """nginx with Debian's proxy_params (or any proxy that says whom it forwards for):
    the page stays private although every request comes from loopback."""
    forwarded = client_addresses(
        "127.0.0.1", headers(X_Forwarded_For="127.0.0.1, 203.0.113.9", X_Real_IP="203.0.113.9")
    )
    assert forwarded == ["127.0.0.1", "127.0.0.1", " 203.0.113.9", "203.0.113.9"]
    assert not Access().admits(forwarded)
    assert Access(allow=("203.0.113.0/24",)).admits(forwarded)
    rfc7239 = client_addresses(
        "::1", headers(Forwarded='for="[2001:db8::7]:4711";proto=https, for=192.0.2.60')
    )
    assert rfc7239[1:] == ['"[2001:db8::7]:4711"', "192.0.2.60"]
    assert Access(allow=("2001:db8::/32", "192.0.2.0/24")).admits(rfc7239)
    assert not Access().admits(client_addresses("127.0.0.1", headers(Forwarded="for=unknown")))
    assert Access().admits(client_addresses("127.0.0.1", headers()))


def test_status_allow_is_checked_with_file_and_line(write_config: Any) -> None:
    path = write_config([], status_allow=["10.0.0.0/8", "192.0.2.7", "fd00::/8"])
    assert load_config(path).settings.status_allow == ("10.0.0.0/8", "192.0.2.7/32", "fd00::/8")
    bad = write_config([], status_allow=["10.0.0.0/8", "example.org"])
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    problem = caught.value.problems[0]
    assert (problem.key, problem.line) == ("settings.status_allow", 2)
    assert "example.org" in problem.message


def fetch(url: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, headers={k.replace("_", "-"): v for k, v in extra.items()}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_daemon_serves_the_status_page(
    server: FeedServer, write_config: Any, tmp_path: Path
) -> None:
    sources = [
        {"id": "good", "name": "好", "url": server.set("/good.xml", rss(ITEMS)), "category": "c"},
        {"id": "bad", "name": "坏", "url": server.url("/missing.xml"), "category": "c"},
    ]
    path = write_config(sources, default_interval=3600)
    with running(path) as daemon:
        assert daemon.server and daemon.store
        base = daemon.server.url
        wait_for(lambda: len(daemon.store.status_rows(daemon.clock()).recent) == 2, what="polls")

        status, sent, body = fetch(base + "/status", Accept_Encoding="gzip")
        assert status == 200 and sent["Content-Encoding"] == "gzip"
        assert sent["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in sent["Content-Security-Policy"]
        assert sent["Cache-Control"] == "no-store"
        page = gzip.decompress(body).decode()
        assert page.index('id="source-bad"') < page.index('id="source-good"')
        assert get(base + "/status?page=2")[0] == 200  # past the last: the last
        assert get(base + "/status?page=x")[0] == get(base + "/status?page=%C2%B2")[0] == 400

        status, sent, body = fetch(base + "/status.json")
        assert status == 200 and sent["Content-Type"] == "application/json; charset=utf-8"
        served = json.loads(body)
        printed = CliRunner().invoke(main, ["status", "--json", "--config", str(path)])
        assert printed.exit_code == 0, printed.output
        from_cli = json.loads(printed.output)
        del served["generated_at"], from_cli["generated_at"]
        assert served == from_cli
        assert [s["id"] for s in served["sources"]] == ["bad", "good"]
        assert served["sources"][0]["last_error"].startswith("HTTP 404")

        # Through a proxy that forwards for someone else: refused, and told why.
        status, _, body = fetch(base + "/status", X_Forwarded_For="203.0.113.9")
        assert status == 403 and b"status_allow" in body
        rewrite(path, sources, status_allow=["203.0.113.0/24"])
        wait_for(lambda: daemon.config.settings.status_allow, what="the reload")
        assert fetch(base + "/status", X_Forwarded_For="203.0.113.9")[0] == 200

        # Turned off (live, by the reloaded config): no page at all.
        rewrite(path, sources, status_page=False)
        wait_for(lambda: not daemon.config.settings.status_page, what="the reload")
        assert get(base + "/status")[0] == 404
        assert get(base + "/status.json")[0] == 404
        assert get(base + "/healthz")[0] == 200


def test_the_terminal_gets_no_control_character_from_a_source(
    server: FeedServer, write_config: Any
) -> None:
    """`aggregator status` and `sources list` print what a source sent with its escape
    sequences shown, never obeyed; --json keeps the text as it is."""
    path = write_config(
        [{"id": "red", "name": "RED", "url": server.url("/missing.xml"), "category": "c"}]
    )
    path.write_text(path.read_text().replace('"RED"', '"\\u001b[31mred\\u202e"'), "utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["poll", "--all", "--config", str(path)]).exit_code == 1
    for command in (["status"], ["sources", "list"]):
        printed = runner.invoke(main, [*command, "--config", str(path)])
        assert printed.exit_code == 0, printed.output
        assert "\\x1b[31mred\\u202e" in printed.output
        assert "\x1b" not in printed.output and "\u202e" not in printed.output
    as_json = runner.invoke(main, ["status", "--json", "--config", str(path)]).output
    assert json.loads(as_json)["sources"][0]["name"] == "\x1b[31mred\u202e"
