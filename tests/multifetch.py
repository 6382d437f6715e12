"""A Fetcher whose fetch() goes through fetch_many, one request at a time: the fetch
tests run both ways, so the multi path keeps every promise the easy path keeps."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from aggregator.errors import FetchError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import FetchRequest
from aggregator.models import FetchResult


class MultiFetcher(Fetcher):
    def fetch(self, url: str, **kwargs: Any) -> FetchResult:
        kwargs["headers"] = tuple(kwargs.get("headers", ()))
        [(key, result)] = list(self.fetch_many([(url, FetchRequest(url, **kwargs))], 1))
        assert key == url
        if isinstance(result, FetchError):
            raise result
        return result


@pytest.fixture(params=["easy", "multi"])
def fetch_way(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Parametrizes a test module over the two ways to fetch: its `Fetcher` name is
    MultiFetcher for the "multi" runs."""
    if request.param == "multi":
        monkeypatch.setattr(sys.modules[request.module.__name__], "Fetcher", MultiFetcher)
    return str(request.param)
