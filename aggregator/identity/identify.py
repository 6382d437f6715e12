"""What an entry is: the identity it is stored under, and whether it means anything
outside its own source. Pure functions over plain data.

An identity is global when the same text from two sources names the same article: a
share code found by the source's rule, a guid that is a URI (an absolute URL, tag: or
urn:), an absolute article URL. Global identities merge copies from any sources into
one entry. Anything else is only meaningful inside one source (a short or opaque guid
such as "1", a relative link, a hash of the entry's own content), so its code carries
the source id and never meets another source's.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from typing import NamedTuple

from aggregator.config.sharecodes import ShareCodeRule
from aggregator.identity.sharecode import fallback_hash, rule_code
from aggregator.models import EntryRecord
from aggregator.urls import normalize_url


class Scope(Enum):
    GLOBAL = "global"  # merges with the same identity from any source
    SOURCE = "source"  # only ever meets the same source's entries


# Rules, besides a share-code rule's own name (ShareCodeRule.name).
GUID = "guid"
LINK = "link"
TITLE_DATE = "title-date"  # no guid, no link: the title and the date
CONTENT = "content"  # no guid, no link, not both a title and a date: everything shown


class Identity(NamedTuple):  # made for every entry: a tuple is cheapest
    code: str  # the key the entry is stored under; its Atom id derives from it
    rule: str
    scope: Scope
    # A source-scoped identity's code in databases made before scopes existed (they
    # stored "guid:1" for every source): a source's own old entries are found by it.
    legacy: str = ""


_URI_GUID = re.compile(r"(?:tag|urn):\S", re.IGNORECASE)
# A scheme, "//", an optional user, a host (a bracketed IPv6 literal or a name), a port:
# what urlsplit calls a URL with a hostname, without its cost on every entry.
_ABSOLUTE_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#]*@)?(?:\[[^]/?#]+\][^/?#@]*|[^]/?#:@[]+(?::[^/?#@]*)?)(?=[/?#]|\Z)"
)


def is_absolute_url(text: str) -> bool:
    """A URL with a scheme and a host: names one resource whoever writes it."""
    return _ABSOLUTE_URL.match(text) is not None


def is_global_guid(guid: str) -> bool:
    """A guid that is a URI (absolute URL, tag:, urn:) is unique by construction; a
    short number or an opaque token is only unique within its feed."""
    return bool(_URI_GUID.match(guid)) or is_absolute_url(guid)


def scoped_code(kind: str, source_id: str, value: str) -> str:
    """The code of a source-scoped identity: `guid@blog:17`. Source ids hold no "@"
    or ":", so it reads back unambiguously and never equals a global code."""
    return f"{kind}@{source_id}:{value}"


def identify(entry: EntryRecord, rule: ShareCodeRule, source_id: str) -> Identity:
    """The identity of one entry of one source.

    In order: the source's share-code rule on the link then the guid; the guid; the
    link; a hash of what the entry has (its title and date, or when it lacks either,
    everything it shows). Only the first that exists counts."""
    code = rule_code(entry, rule)
    if code:
        return Identity(code, rule.name, Scope.GLOBAL)
    guid = entry.guid.strip()
    if guid:
        if is_global_guid(guid):
            return Identity("guid:" + guid, GUID, Scope.GLOBAL)
        return Identity(scoped_code("guid", source_id, guid), GUID, Scope.SOURCE, "guid:" + guid)
    link = entry.link.strip()
    if link:
        normalised = normalize_url(link)
        if is_absolute_url(normalised):
            return Identity("link:" + normalised, LINK, Scope.GLOBAL)
        legacy = "link:" + normalised
        return Identity(scoped_code("link", source_id, normalised), LINK, Scope.SOURCE, legacy)
    date = entry.published or entry.updated
    stamp = date.isoformat() if date else ""
    legacy_hash = fallback_hash(entry.title, stamp)
    if entry.title and date:
        # As before scopes, but per source: an edited text stays the same entry.
        code = scoped_code("hash", source_id, legacy_hash)
        return Identity(code, TITLE_DATE, Scope.SOURCE, "hash:" + legacy_hash)
    urls = [e.url for e in entry.enclosures]
    digest = _digest(entry.title, stamp, str(len(urls)), *urls, entry.summary, entry.content)
    code = scoped_code("hash", source_id, digest)
    return Identity(code, CONTENT, Scope.SOURCE, "hash:" + legacy_hash)


def legacy_scoped(code: str) -> bool:
    """Whether a code stored before identities had scopes (by the guid, link or hash
    rule) names what is now a source-scoped identity."""
    kind, colon, value = code.partition(":")
    if not colon:
        return False
    if kind == "guid":
        return not is_global_guid(value)
    if kind == "link":
        return not is_absolute_url(value)
    return kind == "hash"


def legacy_needs_same_copy(rule: str) -> bool:
    """Whether an old code found for this identity names it only when the stored copy
    is this very copy. Before scopes, every entry lacking a title or a date shared the
    code of its title and date alone (three description-only items: one code): which the
    old entry was, only its stored hash can tell."""
    return rule == CONTENT


def fingerprint(entry: EntryRecord) -> str:
    """What a subscriber reads of an entry, its guid and dates aside: the same link and
    the same content under a new guid from the same source is the same article (a
    server putting a session or a timestamp into its guids)."""
    return content_fingerprint(
        entry.link, entry.title, [e.url for e in entry.enclosures], entry.summary, entry.content
    )


def content_fingerprint(
    link: str, title: str, enclosure_urls: list[str], summary: str, content: str
) -> str:
    """fingerprint() from the fields as stored (the store fills it in for copies
    stored before fingerprints existed)."""
    return _digest(link, title, str(len(enclosure_urls)), *enclosure_urls, summary, content)


def _digest(*parts: str) -> str:
    """SHA-1 of the parts as UTF-8, each with its length (so no two lists of parts
    share a digest)."""
    digest = hashlib.sha1()
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()
