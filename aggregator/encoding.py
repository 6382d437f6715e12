"""Find a feed document's character encoding and decode it. Pure functions.

Precedence, after RFC 7303 and what real (often Chinese) sites send:

1. a byte order mark;
2. the charset parameter of the HTTP Content-Type;
3. the encoding in the XML declaration (read after sniffing the byte
   pattern of ``<?xml``, XML 1.0 appendix F, so UTF-16 without a BOM works);
4. detection: UTF-8 when the bytes are valid UTF-8, else GB18030, else
   windows-1252.

A declared encoding that cannot decode the bytes (GBK wrongly declared as
UTF-8) is passed over for the next candidate. GB2312 and GBK labels are read
as GB18030, their superset: real "GB2312" pages use GBK characters.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
# How "<?" (or "<" then a name) looks in each family when there is no BOM.
_SNIFF = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)
_XML_DECL_ENCODING = re.compile(
    r"""^\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._:-]*)["']"""
)
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^\s;"']+)""", re.IGNORECASE)

# Labels Python does not know, and codecs whose superset we use instead.
_LABELS = {"x-gbk": "gbk", "windows-936": "gbk", "ms936": "gbk", "csgb2312": "gb2312"}
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso8859-1": "cp1252",
    "big5": "big5hkscs",
}
# Codecs that decode (nearly) any bytes, so success proves nothing about the text.
_ANYTHING_GOES = {"cp1252", "iso8859-15", "cp1251", "koi8-r", "iso8859-2", "iso8859-5"}


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec name used
    chosen_by: str  # "bom", "http", "xml", "detected" or "fallback"


def normalise(label: str) -> str | None:
    """A Python codec name for an encoding label, or None if unknown."""
    label = label.strip().strip("\"'").lower()
    if not label:
        return None
    try:
        name = codecs.lookup(_LABELS.get(label, label)).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def http_charset(content_type: str) -> str | None:
    match = _CHARSET.search(content_type or "")
    return match.group(1) if match else None


def bom_encoding(body: bytes) -> tuple[str | None, int]:
    """(encoding, BOM length) for a leading byte order mark."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            # A UTF-16 LE BOM followed by two zero bytes is UTF-32 LE's; checked first above.
            return name, len(bom)
    return None, 0


def sniff_family(body: bytes) -> str:
    """The byte family of a BOM-less document, so its XML declaration can be read."""
    for pattern, name in _SNIFF:
        if body.startswith(pattern):
            return name
    return "ascii"


def xml_declared(body: bytes) -> str | None:
    """The encoding named in the XML declaration, if there is one."""
    family = sniff_family(body)
    head = body[:1024]
    if family != "ascii":
        unit = 4 if "32" in family else 2
        head = head[: len(head) - len(head) % unit]
    try:
        text = head.decode(family, errors="ignore") if family != "ascii" else head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - errors are ignored above
        return None
    match = _XML_DECL_ENCODING.match(text)
    return match.group(1) if match else None


def _try(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _fix_utf16_label(encoding: str, body: bytes) -> str:
    """'utf-16' or 'utf-32' without a BOM: take the byte order from the sniffed pattern."""
    if encoding in ("utf-16", "utf-32"):
        family = sniff_family(body)
        if family.startswith(encoding):
            return family
        return encoding + "-be"  # the XML default without a BOM
    return encoding


def candidates(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """(codec, why) in precedence order, duplicates removed."""
    found: list[tuple[str, str]] = []
    for label, why in (
        (http_charset(content_type), "http"),
        (xml_declared(body), "xml"),
    ):
        codec = normalise(label) if label else None
        if codec:
            found.append((_fix_utf16_label(codec, body), why))
    family = sniff_family(body)
    if family != "ascii":
        found.append((family, "detected"))
    found += [("utf-8", "detected"), ("gb18030", "detected")]
    unique: dict[str, str] = {}
    for codec, why in found:
        unique.setdefault(codec, why)
    return list(unique.items())


def decode(body: bytes, content_type: str = "") -> Decoded:
    """Decode a document's bytes to text, by the precedence above. Never raises."""
    bom, skip = bom_encoding(body)
    if bom:
        text = _try(body[skip:], bom)
        if text is not None:
            return Decoded(text, bom, "bom")
    for codec, why in candidates(body, content_type):
        text = _try(body, codec)
        if text is None:
            continue
        if codec in _ANYTHING_GOES and not body.isascii():
            # Latin-1 style labels decode anything; valid UTF-8 with non-ASCII
            # bytes is almost never meant as Latin-1 (a server default label).
            utf8 = _try(body, "utf-8")
            if utf8 is not None:
                return Decoded(utf8, "utf-8", "detected")
        return Decoded(text, codec, why)
    return Decoded(body.decode("windows-1252", errors="replace"), "cp1252", "fallback")
