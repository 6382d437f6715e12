"""Check a published feed against RFC 4287: the RELAX NG schema and the prose rules."""

from __future__ import annotations

import contextlib
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

A = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def schema_path() -> Path:
    # A copy of the RFC 4287 RELAX NG schema kept with the tests.
    return Path(__file__).resolve().parent / "fixtures" / "schemas" / "atom.rng"


@lru_cache(maxsize=1)
def relaxng() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(schema_path())))


def _absolute_iri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme in ("urn", "tag"))


def problems(data: bytes) -> list[str]:
    """Every way the document breaks RFC 4287 (schema and prose). Empty when valid."""
    found: list[str] = []
    if CONTROL.search(data.decode("utf-8")):
        found.append("control characters in the document")
    root = etree.fromstring(data)
    schema = relaxng()
    if not schema.validate(root):
        found.extend(f"schema: {e.message} (line {e.line})" for e in schema.error_log)
    feed_author = root.find(f"{A}author") is not None
    selfs = [link for link in root.findall(f"{A}link") if link.get("rel") == "self"]
    if len(selfs) != 1:
        found.append("the feed needs exactly one self link")
    for element in root.iter(f"{A}updated", f"{A}published"):
        if not RFC3339.match(element.text or ""):
            found.append(f"not an RFC 3339 date: {element.text!r}")
    for element in root.iter(f"{A}id"):
        if not _absolute_iri((element.text or "").strip()):
            found.append(f"id is not an absolute IRI: {element.text!r}")
    for link in root.iter(f"{A}link"):
        if not _absolute_iri(link.get("href", "")):
            found.append(f"link href is not absolute: {link.get('href')!r}")
    ids = []
    for entry in root.findall(f"{A}entry"):
        ids.append(entry.findtext(f"{A}id"))
        if not feed_author and entry.find(f"{A}author") is None:
            found.append(f"entry {ids[-1]} has no author and the feed has none")
        alternates = [
            link
            for link in entry.findall(f"{A}link")
            if link.get("rel", "alternate") == "alternate"
        ]
        content = entry.find(f"{A}content")
        if not alternates and content is None:
            found.append(f"entry {ids[-1]} has neither content nor an alternate link")
        if content is not None and content.get("type") not in ("html", "text", "xhtml"):
            found.append(f"entry {ids[-1]} content type is {content.get('type')!r}")
        if entry.find(f"{A}source") is None:
            found.append(f"entry {ids[-1]} has no atom:source")
    if len(ids) != len(set(ids)):
        found.append("duplicate entry ids")
    found.extend(validator_problems(root))
    return found


def _canonical(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme == "urn" and value.lower().startswith("urn:uuid:"):
        return value == value.lower()
    host = parts.netloc.rpartition("@")[2]  # user info is case-sensitive; the host is not
    return parts.scheme == parts.scheme.lower() and host == host.lower()


# The W3C feed validator's URI rules (its validators.py: rfc2396, rfc3987,
# rfc2396_full), which the schema lacks. Re-implemented here: the validator is not
# on PyPI; scripts/w3c_feedvalidator.py runs the real one over a checkout.
_URI_CHARS = r"[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]"
_W3C_URI = re.compile(rf"([a-zA-Z][0-9a-zA-Z+\-.]*:)?/{{0,2}}(\[[0-9A-Fa-f:]+\])?{_URI_CHARS}*$")
_W3C_FULL_URI = re.compile(rf"[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?{_URI_CHARS}+$")
_W3C_URN = re.compile(
    r"^[Uu][Rr][Nn]:[a-zA-Z0-9][a-zA-Z0-9-]{1,31}:([a-zA-Z0-9()+,.:=@;$_!*'\-]|%[0-9A-Fa-f]{2})+$"
)
_W3C_UUID = re.compile(
    r"^[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:"
    r"[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$"
)
_W3C_TAG = re.compile(
    r"^tag:([a-z0-9\-._]+?@)?[a-z0-9.\-]+?,\d{4}(-\d{2}(-\d{2})?)?:"
    r"[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,]*(#[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,]*)?$"
)


def w3c_uri_problem(value: str, *, full: bool) -> str | None:
    """The W3C validator's error for a URI, or None: InvalidUUID (a malformed
    urn:uuid:), InvalidURN, InvalidTAG, or InvalidIRI / InvalidFullLink (a character
    no URI has: a raw space, say). `full` for atom:id (an ASCII URI, as the validator's
    canonicaluri reads it), else an IRI (link hrefs), which the validator IDNA-encodes
    whole before anything else (a value it cannot encode is read as it is)."""
    if not full:
        with contextlib.suppress(UnicodeError):
            value = value.encode("idna").decode("utf-8")
    scheme = value.split(":")[0].lower()
    if scheme == "tag":
        return None if _W3C_TAG.match(value) else f"InvalidTAG: {value!r}"
    if scheme == "urn":
        if value.lower().startswith("urn:uuid:") and not _W3C_UUID.match(value):
            return f"InvalidUUID: {value!r}"
        return None if _W3C_URN.match(value) else f"InvalidURN: {value!r}"
    if not (_W3C_FULL_URI if full else _W3C_URI).match(value):
        return f"{'InvalidFullLink' if full else 'InvalidIRI'}: {value!r}"
    if scheme in ("http", "ftp") and not re.match(r"^\w+://[^/].*", value):
        return f"InvalidIRI (no host): {value!r}"
    return None


def w3c_uri_problems(root: etree._Element) -> list[str]:
    found = [w3c_uri_problem((e.text or "").strip(), full=True) for e in root.iter(f"{A}id")]
    found += [w3c_uri_problem(e.get("href", ""), full=False) for e in root.iter(f"{A}link")]
    found += [
        w3c_uri_problem(e.get("scheme", ""), full=False)
        for e in root.iter(f"{A}category")
        if e.get("scheme")
    ]
    return [problem for problem in found if problem]


def validator_problems(root: etree._Element) -> list[str]:
    """What the W3C feed validator warns about, beyond the schema and RFC 4287 prose."""
    found: list[str] = w3c_uri_problems(root)
    if not root.get(XML_LANG):
        found.append("no xml:lang on the feed")
    seen: set[tuple[str | None, str | None, str | None]] = set()
    for link in root.findall(f"{A}link"):
        rel = link.get("rel", "alternate")
        if rel != "alternate":
            continue
        key = (rel, link.get("type"), link.get("hreflang"))
        if key in seen:
            found.append(f"two alternate links of type {key[1]!r}")
        seen.add(key)
    for element in root.iter(f"{A}id"):
        if not _canonical((element.text or "").strip()):
            found.append(f"id is not canonical: {element.text!r}")
    updated = [e.findtext(f"{A}updated") for e in root.findall(f"{A}entry")]
    if len(updated) != len(set(updated)):
        found.append("two entries with the same atom:updated (DuplicateUpdated)")
    for entry in root.findall(f"{A}entry"):
        name = entry.findtext(f"{A}id")
        source = entry.find(f"{A}source")
        if source is not None:
            for child in ("id", "title", "updated"):
                if source.find(f"{A}{child}") is None:
                    found.append(f"entry {name}: atom:source has no {child}")
        for link in entry.findall(f"{A}link"):
            length = link.get("length") or ""
            if link.get("rel") == "enclosure" and not (link.get("type") and length.isdigit()):
                found.append(f"entry {name}: enclosure without type and length")
        for category in entry.findall(f"{A}category"):
            if not (category.get("term") and category.get("label") and category.get("scheme")):
                found.append(f"entry {name}: category without term, label and scheme")
    rels = [link.get("rel") for link in root.findall(f"{A}link")]
    if root.find(f"{FH}archive") is not None:
        if "current" not in rels:
            found.append("archive document without a current link")
    elif "current" in rels:
        found.append("current link in a document that is not an archive")
    return found


def assert_valid(data: bytes) -> None:
    found = problems(data)
    assert not found, "\n".join(found)
