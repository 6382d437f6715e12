"""What one fetch is asked to do, and within which limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aggregator.config.loader import Settings, limits_of

_DEFAULT = limits_of(Settings(), "fetch")  # the defaults are the settings'


@dataclass(frozen=True)
class Limits:
    """A fetch's limits: the [settings] keys declared with limit=("fetch", name)."""

    connect_timeout: float = _DEFAULT["connect_timeout"]
    read_timeout: float = _DEFAULT["read_timeout"]
    deadline: float = _DEFAULT["deadline"]
    max_body_bytes: int = _DEFAULT["max_body_bytes"]
    max_decompressed_bytes: int = _DEFAULT["max_decompressed_bytes"]
    bytes_in_flight: int = _DEFAULT["bytes_in_flight"]  # 0: no budget (see fetch.budget)
    max_redirects: int = _DEFAULT["max_redirects"]
    per_host: int = _DEFAULT["per_host"]

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(**limits_of(settings, "fetch"))


@dataclass(frozen=True)
class FetchRequest:
    """One fetch, as Fetcher.fetch takes it: fetch_many takes many."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    allow_private: bool = False
    now: datetime | None = None
    body: bytes | None = None  # sent as a POST; None: a GET
    # A URL taken from a source's content (an article link): private address space is
    # refused from the first request on, whatever the source's allow_private says.
    untrusted: bool = False
