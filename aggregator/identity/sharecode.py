"""Share codes: the stable identity of an article across sources and guids.

A news-share link such as ``NewsShare.html?infoCode=NW202112242224484383``
carries a code that survives re-publication under other guids. Pure functions.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlsplit

from aggregator.config.loader import ShareCodeRule
from aggregator.models import EntryRecord
from aggregator.urls import normalize_url


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


def _query_value(url: str, param: str) -> str | None:
    try:
        pairs = _query_pairs(url)
    except ValueError:
        return None
    exact = [v for k, v in pairs if k == param and v.strip()]
    loose = [v for k, v in pairs if k.lower() == param.lower() and v.strip()]
    found = exact or loose
    return found[0].strip() if found else None


def _by_rule(candidates: list[str], rule: ShareCodeRule) -> str | None:
    for text in candidates:
        if rule.param:
            value = _query_value(text, rule.param)
        elif rule.regex:
            match = re.search(rule.regex, text)
            value = match.group(1).strip() if match and match.group(1) else None
        else:
            return None
        if value:
            return value
    return None


def fallback_hash(title: str, date: str) -> str:
    return hashlib.sha1(f"{title}\x00{date}".encode()).hexdigest()


def rule_code(entry: EntryRecord, rule: ShareCodeRule) -> str | None:
    """The code the source's rule finds in the entry's link, else in its guid."""
    return _by_rule([c for c in (entry.link, entry.guid) if c], rule)


def share_code(entry: EntryRecord, rule: ShareCodeRule) -> tuple[str, str]:
    """(code, which rule produced it) as codes were made before identities had scopes:
    the source's rule on the link then the guid; the guid; the normalised link; a hash
    of title and date. Feed entries get theirs from aggregator.identity.identify; a post read
    back from a static site (no source, no guid) still gets its code from this."""
    code = rule_code(entry, rule)
    if code:
        return code, rule.name
    if entry.guid.strip():
        return "guid:" + entry.guid.strip(), "guid"
    if entry.link.strip():
        return "link:" + normalize_url(entry.link), "link"
    date = entry.published or entry.updated
    return "hash:" + fallback_hash(entry.title, date.isoformat() if date else ""), "hash"
