"""URL helpers for the fetcher: origins, Location headers, ASCII URLs for curl."""

from __future__ import annotations

import functools
from urllib.parse import quote, urlsplit, urlunsplit

from aggregator.errors import FetchError

Origin = tuple[str, str, int]  # scheme, host, port: what curl matches a connection on


@functools.lru_cache(maxsize=4096)
def origin_of(url: str) -> Origin:
    """A URL's scheme, lower-cased host and port, kept for the next poll: urlsplit
    is a good part of a 304's cost, and the same URLs come back poll after poll."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # curl refuses the URL
        port = 0
    return parts.scheme, parts.hostname or "", port


def decoded_location(value: str) -> str:
    """A Location header, read as latin-1: raw UTF-8 in it (it happens) made text again."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # kept as they are, escapes included


def ascii_url(url: str) -> str:
    """The URL as curl must get it: an IDNA host name, other non-ASCII characters
    and spaces %-escaped as UTF-8 (what browsers send)."""
    if url.isascii() and " " not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        name, colon, port = hostport.partition(":")  # (a non-ASCII host has no [brackets])
        try:
            netloc = f"{userinfo}{at}{_idna(name)}{colon}{port}"
        except UnicodeError:
            raise FetchError(f"not a valid host name: {name!r}") from None
    return quote(urlunsplit(parts._replace(netloc=netloc)), safe=URL_SAFE)


def _idna(host: str) -> str:
    # The standard library's IDNA 2003 codec: enough for the Chinese and other
    # names feeds use, without one more dependency.
    return host.encode("idna").decode("ascii")


def check_scheme(url: str, scheme: str | None = None) -> None:
    if (scheme or urlsplit(url).scheme) not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {url!r}")
