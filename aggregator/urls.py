"""URL spellings shared by every step: one canonical form, so one article's links
compare equal. Pure functions."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|fbclid|gclid|spm|from|share_token)$", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


_EDGE_JUNK = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")


def clean_url(url: str) -> str:
    """As browsers do (WHATWG URL): drop tabs and newlines, trim controls and spaces."""
    return _EDGE_JUNK.sub("", _TAB_NEWLINE.sub("", url))


def normalize_url(url: str) -> str:
    """A canonical spelling of a URL, so one article's links compare equal.

    Lowercases scheme and host, drops default ports, fragments and tracking
    parameters, sorts the query. Idempotent.
    """
    url = clean_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal: no canonical form, keep the text
        return url
    if not parts.scheme or not parts.netloc:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not _TRACKING_PARAMS.match(k)
    )
    return clean_url(urlunsplit((scheme, host, parts.path or "/", urlencode(query), "")))
