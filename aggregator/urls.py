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


def _query_pairs(url: str) -> list[tuple[str, str]]:
    """parse_qsl(urlsplit(url).query), non-blank values only. Raises ValueError as
    urlsplit does."""
    if _PLAIN_QUERY_URL.match(url):
        # Nothing for urlsplit to clean or refuse, nothing for parse_qsl to decode: the
        # query runs from the first "?" to the first "#" (a host cannot hold either).
        query = url.partition("#")[0].partition("?")[2]
        return [
            (name, value)
            for name, equals, value in (part.partition("=") for part in query.split("&"))
            if equals and value
        ]
    return parse_qsl(urlsplit(url).query, keep_blank_values=False)


# ASCII, starting with a visible character; no tab or newline (urlsplit drops them), no
# bracket (an IPv6 literal it may refuse), no "%" or "+" (which parse_qsl decodes).
_PLAIN_QUERY_URL = re.compile(r"[!-$&-*,-Z\\^-~][ -$&-*,-Z\\^-~]*\Z")


def query_value(url: str, param: str) -> str | None:
    """The first non-blank value of a query parameter, its name matched exactly, else
    regardless of case; None when there is none or the URL cannot be read."""
    try:
        pairs = _query_pairs(url)
    except ValueError:
        return None
    exact = [v for k, v in pairs if k == param and v.strip()]
    loose = [v for k, v in pairs if k.lower() == param.lower() and v.strip()]
    found = exact or loose
    return found[0].strip() if found else None
