"""Missing and future dates take the first-seen time, and keep it on later polls."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.config.loader import load_config
from aggregator.fetch.fetcher import Fetcher
from aggregator.run.poll import poll_source
from aggregator.store.sqlite import SqliteStore
from tests.conftest import Clock
from tests.feeds import Item, rss
from tests.feedserver import FeedServer


def _feed(date: str | None, title: str) -> bytes:
    body = rss([Item("NW202112240300260001", title, date=date or "")])
    return body.replace(b"<pubDate></pubDate>", b"")


@pytest.mark.parametrize(
    "date", [None, "Wed, 01 Jan 2098 00:00:00 +0000", "0000-00-00 00:00:00", "Thu, 01 Jan 1970"]
)
def test_untrustworthy_dates_become_first_seen_and_stay(
    date: str | None, server: FeedServer, write_config: Any, clock: Clock
) -> None:
    url = server.set("/f.xml", _feed(date, "第一版"))
    config = load_config(
        write_config(
            [
                {
                    "id": "s",
                    "name": "s",
                    "url": url,
                    "category": "c",
                    "share_code": {"param": "infoCode"},
                }
            ]
        )
    )
    source = config.sources[0]
    first_seen = clock.now
    with SqliteStore(config.settings.database) as store, Fetcher() as fetcher:
        assert poll_source(source, store, fetcher, clock=clock).new == 1
        assert store.articles(("all", ""), 5)[0].published == first_seen

        for version in ("第二版", "第三版"):  # edits: the entry is rewritten each time
            clock.advance(6 * 3600)
            server.set("/f.xml", _feed(date, version))
            outcome = poll_source(source, store, fetcher, clock=clock)
            assert outcome.updated == 1, outcome
            article = store.articles(("all", ""), 5)[0]
            assert article.title == version
            assert article.published == first_seen
            assert article.updated == clock.now
