"""Screen a decoded XML document before any XML parser sees it. Pure functions.

expat (behind feedparser) has some billion-laughs protection, but it allows
a 100x amplification, and when it gives up feedparser re-parses loosely and
expands the entities itself: one quadratic-blowup feed made a 1 GB title in
2.9 GB of memory. So the DOCTYPE is taken apart here first, by a small
scanner (not a regular expression a crafted DTD can slip past):

- only internal general entities with plain replacement text (or a single
  character reference) are kept;
- parameter entities, external entities, entities that refer to other
  entities, and a DOCTYPE the scanner cannot read are refused outright;
- the total text all kept entities would expand to is bounded;
- everything else in the DTD (external subset, ELEMENT, ATTLIST...) is
  dropped, so nothing external is ever read or fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aggregator.errors import ParseError

MAX_EXPANSION = 100_000  # characters all entity references may add, in total
MAX_ENTITIES = 256

# An XML name: [A-Za-z_:\u00c0-\uffff] then [\w.:\u00b7\u00c0-\uffff-]*, spelt with
# negated classes: re takes ~5 ms to compile a range over most of the BMP, and these
# compile in every process that reads feeds.
_ASTRAL = "\U00010000-\U0010ffff"
_NAME_START = rf"[^\x00-\x39\x3b-\x40\x5b-\x5e\x60\x7b-\xbf{_ASTRAL}]"
_NAME_CHAR = rf"(?:[\w.:\u00b7-]|[^\x00-\xbf{_ASTRAL}])"
_XML_NAME = _NAME_START + _NAME_CHAR + "*"
_NAME = re.compile(_XML_NAME)
_SPACE = re.compile(r"\s*")
# Plain text, or one character reference: what feedparser's own loose parser accepts too.
_PLAIN_VALUE = re.compile(r"(?:[^&%<>\"]*|&#[0-9]+;|&#x[0-9A-Fa-f]+;)\Z")
_PLAIN_NAME = re.compile(r"\w+\Z")
_ROOT_START = re.compile(f"<({_XML_NAME})")


@dataclass(frozen=True)
class Screened:
    text: str  # the document with its DOCTYPE rewritten (or removed)
    root: str | None  # the root element's name, None when no element starts the document
    entities: tuple[tuple[str, str], ...] = ()  # the internal entities kept

    @property
    def has_dtd(self) -> bool:
        return bool(self.entities)


class _Scanner:
    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()

    def startswith(self, prefix: str | tuple[str, ...]) -> bool:
        return self.text.startswith(prefix, self.pos)

    def until(self, end: str, what: str) -> str:
        """The text up to `end`, consuming both."""
        found = self.text.find(end, self.pos)
        if found < 0:
            raise ParseError(f"refused: unterminated {what} in the DOCTYPE")
        value = self.text[self.pos : found]
        self.pos = found + len(end)
        return value

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise ParseError("refused: malformed DOCTYPE (a name was expected)")
        self.pos = match.end()
        return match.group(0)

    def quoted(self) -> str:
        quote = self.text[self.pos : self.pos + 1]
        if quote not in ("'", '"'):
            raise ParseError("refused: malformed DOCTYPE (a quoted value was expected)")
        self.pos += 1
        return self.until(quote, "quoted value")

    def external_id(self) -> bool:
        """Skip SYSTEM "..." or PUBLIC "..." "..."; True when there was one."""
        if self.startswith("SYSTEM"):
            self.pos += 6
            self.skip_space()
            self.quoted()
            return True
        if self.startswith("PUBLIC"):
            self.pos += 6
            self.skip_space()
            self.quoted()
            self.skip_space()
            if self.text[self.pos : self.pos + 1] in ("'", '"'):
                self.quoted()
            return True
        return False

    def declaration_end(self) -> None:
        """Skip to the '>' closing a markup declaration, honouring quotes."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in ("'", '"'):
                self.quoted()
            elif char == ">":
                self.pos += 1
                return
            elif char in "<%&":
                raise ParseError("refused: malformed declaration in the DOCTYPE")
            else:
                self.pos += 1
        raise ParseError("refused: unterminated declaration in the DOCTYPE")


def _entity(scan: _Scanner) -> tuple[str, str]:
    scan.skip_space()
    if scan.startswith("%"):
        raise ParseError("refused: the DOCTYPE declares a parameter entity")
    name = scan.name()
    scan.skip_space()
    if scan.external_id():
        raise ParseError(f"refused: the DOCTYPE declares an external entity ({name})")
    value = scan.quoted()
    scan.skip_space()
    if not scan.startswith(">"):
        raise ParseError("refused: malformed entity declaration in the DOCTYPE")
    scan.pos += 1
    if not _PLAIN_NAME.match(name):
        raise ParseError(f"refused: unusual entity name {name!r} in the DOCTYPE")
    if not _PLAIN_VALUE.match(value):
        raise ParseError(f"refused: entity {name} refers to other entities or holds markup")
    return name, value


def _internal_subset(scan: _Scanner) -> list[tuple[str, str]]:
    entities: list[tuple[str, str]] = []
    while True:
        scan.skip_space()
        if scan.pos >= len(scan.text):
            raise ParseError("refused: unterminated DOCTYPE")
        if scan.startswith("]"):
            scan.pos += 1
            return entities
        if scan.startswith("<!--"):
            scan.pos += 4
            scan.until("-->", "comment")
        elif scan.startswith("<?"):
            scan.pos += 2
            scan.until("?>", "processing instruction")
        elif scan.startswith("<!ENTITY"):
            scan.pos += 8
            entities.append(_entity(scan))
            if len(entities) > MAX_ENTITIES:
                raise ParseError("refused: the DOCTYPE declares too many entities")
        elif scan.startswith(("<!ELEMENT", "<!ATTLIST", "<!NOTATION")):
            scan.pos += 2
            scan.name()
            scan.declaration_end()
        elif scan.startswith("%"):
            raise ParseError("refused: the DOCTYPE uses a parameter entity")
        else:
            raise ParseError("refused: malformed DOCTYPE")


def _doctype(scan: _Scanner) -> list[tuple[str, str]]:
    """Read a DOCTYPE (scan is just past '<!DOCTYPE'); return its entity declarations."""
    scan.skip_space()
    scan.name()
    scan.skip_space()
    scan.external_id()  # an external DTD is dropped, never read
    scan.skip_space()
    entities: list[tuple[str, str]] = []
    if scan.startswith("["):
        scan.pos += 1
        entities = _internal_subset(scan)
        scan.skip_space()
    if not scan.startswith(">"):
        raise ParseError("refused: malformed DOCTYPE")
    scan.pos += 1
    return entities


def _check_expansion(entities: list[tuple[str, str]], body: str) -> None:
    """One pass over the body; stops as soon as the bound is passed."""
    sizes = {name: len(value) for name, value in entities if value}
    if not sizes:
        return
    references = re.compile("&(" + "|".join(re.escape(n) for n in sizes) + ");")
    total = 0
    for match in references.finditer(body):
        total += sizes[match.group(1)]
        if total > MAX_EXPANSION:
            raise ParseError(
                f"refused: entity references would expand to more than {MAX_EXPANSION} characters"
            )


def _rebuilt(root: str, entities: list[tuple[str, str]]) -> str:
    if not entities:
        return ""
    # One declaration a line: the layout feedparser's own DOCTYPE handling reads.
    declared = "".join(f'<!ENTITY {name} "{value}">\n' for name, value in entities)
    return f"<!DOCTYPE {root} [\n{declared}]>"


def screen(text: str) -> Screened:
    """Rewrite the prolog of a decoded document; raises ParseError on a hostile DTD."""
    scan = _Scanner(text, 0)
    doctype_span: tuple[int, int] | None = None
    entities: list[tuple[str, str]] = []
    while True:
        scan.skip_space()
        if scan.startswith("<?"):
            scan.pos += 2
            scan.until("?>", "processing instruction")
        elif scan.startswith("<!--"):
            scan.pos += 4
            scan.until("-->", "comment")
        elif scan.text[scan.pos : scan.pos + 9].upper() == "<!DOCTYPE":
            if doctype_span is not None:
                raise ParseError("refused: two DOCTYPE declarations")
            start = scan.pos
            scan.pos += 9
            entities = _doctype(scan)
            doctype_span = (start, scan.pos)
        else:
            break
    root_match = _ROOT_START.match(text, scan.pos)
    root = root_match.group(1) if root_match else None
    if doctype_span is None:
        return Screened(text, root)
    start, end = doctype_span
    rest = text[end:]
    _check_expansion(entities, rest)
    rebuilt = _rebuilt(root or "feed", entities)
    return Screened(text[:start] + rebuilt + rest, root, tuple(entities))


def is_complete(text: str, root: str) -> bool:
    """False for a document cut off before its root element closes."""
    if text.rfind(f"</{root}") >= 0:
        return True
    # A root element that is empty: <rss .../> and nothing inside.
    start = text.find(f"<{root}")
    end = text.find(">", start)
    return start >= 0 and end > 0 and text[end - 1] == "/"
