"""Share codes: the stable identity of an article across sources and guids.

A news-share link such as ``NewsShare.html?infoCode=NW202112242224484383``
carries a code that survives re-publication under other guids. Pure functions.
"""

from __future__ import annotations

import hashlib

from aggregator.config.sharecodes import ShareCodeRule
from aggregator.models import EntryRecord
from aggregator.urls import normalize_url


def _by_rule(candidates: list[str], rule: ShareCodeRule) -> str | None:
    for text in candidates:
        value = rule.find(text)
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
