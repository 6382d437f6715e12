"""Check a published feed against RFC 4287: the RELAX NG schema and the prose rules."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

A = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def schema_path() -> Path:
    # The project sits beside shared/ (../shared from the project root).
    here = Path(__file__).resolve().parent.parent
    return here.parent / "shared" / "schemas" / "atom.rng"


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
    return found


def assert_valid(data: bytes) -> None:
    found = problems(data)
    assert not found, "\n".join(found)
