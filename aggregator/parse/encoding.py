"""Find a feed document's character encoding and decode it. Pure functions.

Precedence, after RFC 7303 and what real (often Chinese) sites send:

1. a byte order mark;
2. the charset parameter of the HTTP Content-Type;
3. the encoding in the XML declaration (read after sniffing the byte
   pattern of ``<?xml``, XML 1.0 appendix F, so UTF-16 without a BOM works);
4. detection: UTF-8 when the bytes are valid UTF-8; UTF-8 with U+FFFD for the
   bad bytes when they are overwhelmingly UTF-8 (a few broken characters do
   not make a document windows-1252); else what a detector (charset-normalizer)
   finds, GB18030 first whenever it finds GB18030 about as likely as anything
   (this project's sources are Chinese, and short GBK text also reads as EUC-KR
   or Big5), so EUC-JP, EUC-KR, Shift_JIS, KOI8-R or TIS-620 are told apart;
   windows-1252 when nothing fits.

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
# <meta charset="gbk"> or <meta http-equiv="Content-Type" content="text/html; charset=gb2312">
_META_CHARSET = re.compile(
    rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE
)
# How far into an HTML page its <meta> charset is looked for (HTML's prescan reads 1024
# bytes; real Chinese pages put long <title>s and scripts before it).
HTML_PRESCAN = 4096

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


# Overwhelmingly UTF-8: this many valid non-ASCII characters or more for each bad byte.
MOSTLY_UTF8 = 20
# How much more disorder (charset-normalizer's "chaos", 0 to 1) GB18030 may show than the
# detector's best guess and still be taken: short Chinese text reads nearly as well in
# EUC-KR, Johab or Big5; Korean or Japanese text of a few dozen characters read as GB18030
# shows 0.15 or more.
GB18030_MARGIN = 0.1
# The detector reads this much of a body at most (it samples within it).
DETECT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec name used
    # "bom", "http", "meta", "xml", "detected", "repaired" (UTF-8 with U+FFFD) or "fallback"
    chosen_by: str


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


def html_declared(body: bytes) -> str | None:
    """The charset an HTML page's <meta> names near its start, if any."""
    match = _META_CHARSET.search(body[:HTML_PRESCAN])
    return match.group(1).decode("ascii") if match else None


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


def candidates(body: bytes, content_type: str, html: bool = False) -> list[tuple[str, str]]:
    """(codec, why) in precedence order, duplicates removed: the declared encodings (for
    an HTML page, its <meta> charset after HTTP's), the byte family, UTF-8. (What
    detection finds comes after these, in decode.)"""
    found: list[tuple[str, str]] = []
    declared = (
        (http_charset(content_type), "http"),
        *(((html_declared(body), "meta"),) if html else ()),
        (xml_declared(body), "xml"),
    )
    for label, why in declared:
        codec = normalise(label) if label else None
        if codec:
            found.append((_fix_utf16_label(codec, body), why))
    family = sniff_family(body)
    if family != "ascii":
        found.append((family, "detected"))
    found.append(("utf-8", "detected"))
    unique: dict[str, str] = {}
    for codec, why in found:
        unique.setdefault(codec, why)
    return list(unique.items())


def decode(body: bytes, content_type: str = "", html: bool = False) -> Decoded:
    """Decode a document's bytes to text, by the precedence above (an HTML page's
    <meta> charset counting as declared). Never raises."""
    bom, skip = bom_encoding(body)
    if bom:
        text = _try(body[skip:], bom)
        if text is not None:
            return Decoded(text, bom, "bom")
    for codec, why in candidates(body, content_type, html):
        text = _try(body, codec)
        if text is None:
            continue
        if codec in _ANYTHING_GOES and not body.isascii():
            # Latin-1 style labels decode anything; UTF-8 with non-ASCII bytes is
            # almost never meant as Latin-1 (a server default label).
            utf8 = _try(body, "utf-8")
            if utf8 is not None:
                return Decoded(utf8, "utf-8", "detected")
            repaired = mostly_utf8(body)
            if repaired is not None:
                return Decoded(repaired, "utf-8", "repaired")
        return Decoded(text, codec, why)
    repaired = mostly_utf8(body)
    if repaired is not None:
        return Decoded(repaired, "utf-8", "repaired")
    return detect(body)


def mostly_utf8(body: bytes) -> str | None:
    """The body read as UTF-8, a U+FFFD for each bad sequence, when it is overwhelmingly
    UTF-8 (MOSTLY_UTF8 good non-ASCII characters for each bad one); else None. GBK or
    Latin-1 bytes make almost no valid UTF-8 sequence, which its head shows already."""
    head = body[:_HEAD_BYTES]
    if len(body) > len(head) and not _mostly_utf8(head.decode("utf-8", errors="replace"), head):
        return None
    text = body.decode("utf-8", errors="replace")
    return text if _mostly_utf8(text, body) else None


_HEAD_BYTES = 64 * 1024


def _mostly_utf8(text: str, body: bytes) -> bool:
    bad = text.count("\ufffd") - body.count("\ufffd".encode())  # the body's own are good
    if bad <= 0:
        return True
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return non_ascii - bad >= MOSTLY_UTF8 * bad


def detect(body: bytes) -> Decoded:
    """The encoding a detector finds for a body that declares none that works: GB18030
    when it decodes and the detector finds it about as likely as its best guess (see
    GB18030_MARGIN), else the best guess, else windows-1252 with replacements."""
    from charset_normalizer import from_bytes  # its tables load on the first document

    gb18030 = _try(body, "gb18030")
    matches = from_bytes(_sample(body), preemptive_behaviour=False)
    best = matches.best()
    chaos = {normalise(m.encoding): m.chaos for m in reversed(list(matches))}
    if gb18030 is not None and (
        best is None or chaos.get("gb18030", 1.0) <= best.chaos + GB18030_MARGIN
    ):
        return Decoded(gb18030, "gb18030", "detected")
    codec = normalise(best.encoding) if best is not None else None
    if best is not None and any(
        normalise(m.encoding) == "cp1252" and (m.chaos, m.coherence) == (best.chaos, best.coherence)
        for m in matches
    ):
        codec = "cp1252"  # on a tie, the web's default for undeclared Latin text
    if codec:
        text = _try(body, codec)
        if text is None:  # beyond the sample: a few bad bytes
            text = body.decode(codec, errors="replace")
        return Decoded(text, codec, "detected")
    if gb18030 is not None:
        return Decoded(gb18030, "gb18030", "detected")
    return Decoded(body.decode("windows-1252", errors="replace"), "cp1252", "fallback")


def _sample(body: bytes) -> bytes:
    """The head of a large body, cut after a ">" (ASCII in every encoding that gets
    here), so no character is split."""
    if len(body) <= DETECT_BYTES:
        return body
    cut = body.rfind(b">", 0, DETECT_BYTES)
    return body[: cut + 1] if cut > 0 else body[:DETECT_BYTES]
