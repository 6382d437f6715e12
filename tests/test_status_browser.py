"""The status page in a real browser: headless Chromium loads /status from a running
daemon with a failing and a healthy source, takes a screenshot, and the test reads the
DOM Chromium built."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from tests.browser import dump_dom, find_chromium, screenshot
from tests.daemonkit import running, wait_for
from tests.feeds import Item, rss
from tests.feedserver import FeedServer

ITEMS = [
    Item("NW202112240805120001", "Metro line 16 opens", guid="a-1"),
    Item("NW202112241000000004", "Roadworks on the G30", guid="a-2"),
]
HOSTILE_NAME = "<script>document.title='pwned'</script> \"Daily\" \x07bell"
HOSTILE_REASON = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="session")
def chromium() -> Iterator[str]:
    yield find_chromium()


def hostile_500(handler: BaseHTTPRequestHandler) -> None:
    body = b"no"
    handler.send_response(500, HOSTILE_REASON)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_the_status_page_in_chromium(
    chromium: str, server: FeedServer, write_config: Any, tmp_path: Path
) -> None:
    good = server.set("/good.xml", rss(ITEMS))
    bad = server.set("/bad.xml", handler=hostile_500)
    path = write_config(
        [
            {"id": "xian-daily", "name": "Xi'an Daily", "url": good, "category": "news"},
            {
                "id": "broken",
                "name": HOSTILE_NAME.replace("\x07", "BELL"),
                "url": bad,
                "category": "news",
            },
        ],
        default_interval=600,
    )
    # TOML spells a control character only as an escape.
    path.write_text(path.read_text(encoding="utf-8").replace("BELL", "\\u0007"), "utf-8")
    with running(path) as daemon:
        assert daemon.server and daemon.store
        url = daemon.server.url + "/status"
        wait_for(lambda: server.hits("/good.xml") and server.hits("/bad.xml"), what="both polled")
        wait_for(lambda: daemon.store and len(daemon.store.status_rows(daemon.clock()).recent) == 2)
        picture = screenshot(chromium, url, tmp_path / "status.png")
        dom = dump_dom(chromium, url)
    keep = os.environ.get("AGGREGATOR_SCREENSHOT_DIR")
    if keep:  # to look at it: AGGREGATOR_SCREENSHOT_DIR=/some/dir pytest ...
        shutil.copy(picture, Path(keep) / "status.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 5000

    page = lxml.html.document_fromstring(dom)
    assert page.findtext(".//title") == "aggregator: 1 of 2 sources failing"
    assert not page.xpath("//script") and not page.xpath("//img")  # shown, never run
    rows = page.xpath("//table[@id='sources']/tbody/tr")
    assert [row.get("id") for row in rows] == ["source-broken", "source-xian-daily"]
    broken, healthy = rows
    assert broken.get("data-health") == "failing" and healthy.get("data-health") == "ok"

    name = broken.xpath(".//*[@class='name']")[0].text_content()
    assert name == HOSTILE_NAME.replace("\x07", "\\x07")
    error = broken.xpath(".//*[contains(@class, 'last-error')]")[0].text_content()
    assert f"HTTP 500 {HOSTILE_REASON}" in error
    assert broken.xpath(".//td[contains(@class, 'errors')]")[0].text_content() == "1"
    assert "HTTP 500" in broken.xpath(".//td[@class='result']")[0].text_content()

    assert healthy.xpath(".//td[contains(@class, 'entries')]")[0].text_content() == "2"
    assert "2 today" in healthy.xpath(".//td[contains(@class, 'new-entries')]")[0].text_content()
    # Each source has its two charts: the healthy one a bar of new entries today and a
    # fetch bar; the failing one a red fetch bar and a red mark under today.
    for row in rows:
        assert len(row.xpath(".//svg")) == 2
    assert healthy.xpath(".//td[contains(@class,'new-entries')]//*[@class='new']")
    assert healthy.xpath(".//td[contains(@class,'fetch-times')]//*[@class='fetched']")
    assert broken.xpath(".//td[contains(@class,'fetch-times')]//*[@class='fail']")
    assert broken.xpath(".//td[contains(@class,'new-entries')]//*[@class='fail']")
