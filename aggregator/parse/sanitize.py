"""Make text from untrusted feeds safe to store and republish. Pure functions.

HTML goes through an allow-list sanitizer (nh3): no scripts, no event
handlers, no forms, only absolute http(s) (and mailto) URLs, resolved
against the feed's base (a document without an http(s) base, a file: source,
keeps relative ones as written); no attribute at all may carry a javascript:,
vbscript: or data: value. Every string loses the control characters XML
cannot carry.
"""

from __future__ import annotations

import functools
import html
import itertools
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import nh3

from aggregator.parse import iri
from aggregator.parse.xmlchars import ILLEGAL_CHARS, MAX_URL, strip_control

# Markup as an HTML parser reads it: a tag starts with "<" and an ASCII letter (or
# "/" and one), a comment or declaration with "<!" or "<?". "<独家>" and "a<b 且" are
# text to it.
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^>]*>|<[!?][^>]*>", re.S)
_SPACE = re.compile(r"\s+")
# A tag a browser would read as one, of an element HTML has (a comment too): what
# makes a title that says it is text markup all the same (parse.title_is_markup).
_REAL_TAG = re.compile(
    r"<!--.*?-->|</?([A-Za-z][A-Za-z0-9]*+)"
    r"""(?:\s++[A-Za-z_:][-A-Za-z0-9_:.]*+(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s"'<>=`]++))?+)*+"""
    r"\s*+/?>",
    re.S,
)
_ELEMENT_NAMES = """a abbr acronym address area article aside audio b base bdi bdo big blink
    blockquote body br button canvas caption center cite code col colgroup data datalist dd
    del details dfn dialog dir div dl dt em embed fieldset figcaption figure font footer
    form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins
    kbd label legend li link main map mark marquee math menu meta meter nav nobr noembed
    noframes noscript object ol optgroup option output p param picture plaintext pre
    progress q rp rt ruby s samp script search section select slot small source span strike
    strong style sub summary sup svg table tbody td template textarea tfoot th thead time
    title tr track tt u ul var video wbr xmp"""
HTML_ELEMENTS = frozenset(_ELEMENT_NAMES.split())
# Invisible characters that change how a title and the text around it are shown, or
# hide what it says: bidi embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069), zero-width space, word joiner and the invisible operators
# (U+200B, U+2060-U+2064), U+FEFF anywhere, the Mongolian vowel separator. Joiners
# (U+200C, U+200D) and the bidi marks stay: scripts and emoji need them.
_DISPLAY_HAZARDS = re.compile("[\u180e\u200b\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Combining marks kept on one letter: scripts stack a few; "Zalgo" text stacks
# hundreds, drawn over the lines around it.
MAX_MARKS = 5

ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
    "audio",
    "video",
    "source",
    "picture",
}
ALLOWED_ATTRIBUTES = {
    "*": {"title", "lang", "dir", "class"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "audio": {"src", "controls"},
    "video": {"src", "controls", "poster", "width", "height"},
    "source": {"src", "type"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
URL_SCHEMES = {"http", "https", "mailto"}
URL_ATTRIBUTES = {"href", "src", "cite", "poster"}
# Browsers ignore whitespace and controls inside a scheme ("java\tscript:").
_SQUEEZE = re.compile(r"[\s\x00-\x1f]+")
_DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")


def _attribute_filter(base: str) -> Callable[[str, str, str], str | None]:
    def check(tag: str, name: str, value: str) -> str | None:
        # Every scheme checked for ends in a colon, and a value starting "http(s)://"
        # still does once squeezed: the common values need no regex.
        if ":" in value and not value.startswith(("http://", "https://")):
            if _SQUEEZE.sub("", value).lower().startswith(_DANGEROUS_SCHEMES):
                return None
            if name == "href" and value.strip().lower().startswith("mailto:"):
                return value.strip()
        if name in URL_ATTRIBUTES:
            url = absolute_http_url(value, base)
            if url and not url.isascii():  # a host in another script, say
                url = _as_uri(url)
            return url or (None if base else _relative(value))
        return value

    return check


def _as_uri(url: str) -> str:
    """A URL as published links are (iri.link: a look-alike host in IDNA)."""
    return iri.link(url)


def _relative(value: str) -> str | None:
    """A relative reference ("/more.html", "a/b.jpg", "#top") as written, for a document
    with no http(s) base to resolve it against (a file: source): kept, not dropped.
    One with a scheme has been judged already."""
    value = strip_control(value).strip()
    try:
        relative = bool(value) and not urlsplit(value).scheme and len(value) <= MAX_URL
    except ValueError:
        return None
    return value if relative else None


@functools.lru_cache(maxsize=128)
def _cleaner(base: str, strip_comments: bool) -> nh3.Cleaner:
    """One sanitizer per base URL, built once: nh3.clean() rebuilds its sanitizer from
    the allow-lists on every call, which costs as much as the sanitizing itself.
    A poll cleans every entry of a feed against the same base, so few are alive."""
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter(base),
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=strip_comments,
    )


def _nh3(fragment: str, base: str, strip_comments: bool = True) -> str:
    return str(_cleaner(base, strip_comments).clean(fragment))


# HTML whose sanitized form is known without sanitizing it, in two shapes news sites
# publish: sanitizing it costs several times the check (tests/test_fast_paths.py holds
# the result to nh3's).
#
# The plain shape: paragraphs of text with a few inline tags, links and images, in the
# one spelling html5ever writes them (lower case, few attributes, double-quoted), no
# character it escapes or drops (& < > U+00A0 CR, a leading U+FEFF), no control, no
# value the attribute filter would change but the URLs, which are joined as it joins
# them. The seed article is written so.
_SAFE_CHAR = f"[^<>&\r\xa0\ufeff{ILLEGAL_CHARS}]"
_VALUE = '[^":<>&\r\xa0\x00-\x1f\ud800-\udfff\ufffe\uffff]*+'
_URL_VALUE = '[^"<>&\\\\\\s\x00-\x1f\x7f-\xa0\ud800-\udfff\ufffe\uffff]++'
_SAFE_ATTRIBUTE = f'(?: (?:class|title|lang|dir)="{_VALUE}")?'
_LINK = f'<a href="{_URL_VALUE}">{_SAFE_CHAR}*+</a>'
_IMAGE = f'<img src="{_URL_VALUE}"(?: alt="{_VALUE}")?>'
# One alternative per tag: a group and a backreference inside these possessive
# repeats trip a bug in Python 3.11's re ("the span of capturing group is wrong").
_INLINE = "|".join(
    f"<{tag}{_SAFE_ATTRIBUTE}>{_SAFE_CHAR}*+</{tag}>" for tag in ("strong", "b", "em", "i", "span")
)
_PHRASING = f"{_SAFE_CHAR}++|<br>|{_LINK}|{_IMAGE}"
_PLAIN_SHAPE = f"(?:{_PHRASING}|{_INLINE}|<p{_SAFE_ATTRIBUTE}>(?:{_PHRASING}|{_INLINE})*+</p>)*+"
_URL_ATTRIBUTE = re.compile('<(a href|img src)="([^"]*)"')
_LINK_REL = ' rel="noopener noreferrer"'  # added to every link (see _cleaner)

# The wider shape, as many CMSs write: any double-quoted attributes (inline styles, sizes,
# targets), "<br />", &nbsp; indents (the four references html5ever writes back as they
# came), inline tags nested, closed in the order opened, at most three deep and none
# left open across a paragraph's edge (_nested). Each tag keeps the attributes the
# allow-list keeps, in their order; a duplicate is dropped, as html5ever drops it.
_TEXT = f"(?:{_SAFE_CHAR}++|&(?:nbsp|amp|lt|gt);)"
_ATTRIBUTES = '(?: [a-z][a-z-]*+="[^"<>\x00-\x1f\ud800-\udfff\ufffe\uffff]*+")*+'
_INLINE_NAMES = "strong|b|em|i|span|u|sub|sup"
_WIDER_PHRASING = "|".join(
    (
        _TEXT,
        "<br(?: ?/)?>",
        f"<a{_ATTRIBUTES}>{_TEXT}*+</a>",
        f"<img{_ATTRIBUTES}(?: ?/)?>",
        f"<(?:{_INLINE_NAMES}){_ATTRIBUTES}>|</(?:{_INLINE_NAMES})>",
    )
)
_WIDER_SHAPE = f"(?:{_WIDER_PHRASING}|<p{_ATTRIBUTES}>(?:{_WIDER_PHRASING})*+</p>)*+"
_NESTING = re.compile(f"<(/?)(p|{_INLINE_NAMES})[ >]")
_MAX_DEPTH = 3  # html5ever rewrites more than three like formatting tags open at once
# A start tag of the wider shape that cleaning may change: a link, or one with
# attributes or a closing slash. Other bare tags ("<p>", "<strong>") stay as they are.
_TAG_TO_CLEAN = re.compile(r"<(a(?=[ >])|[a-z]+(?=[ /]))([^>]*)>")
_ATTRIBUTE = re.compile(r' ([a-z][a-z-]*)="([^"]*)"')
# A value the attribute filter gives back unchanged (no scheme to judge) and html5ever
# writes back as it came (no & or U+00A0 to escape).
_KEPT_VALUE = re.compile('[^":&\xa0]*')
_KEPT = {
    tag: frozenset(names | ALLOWED_ATTRIBUTES["*"]) for tag, names in ALLOWED_ATTRIBUTES.items()
}


@functools.cache
def _shape(pattern: str) -> re.Pattern[str]:
    """A shape compiled on first use: a command that cleans nothing never pays for it."""
    return re.compile(pattern)


def _clean_known_shape(fragment: str, base: str) -> str | None:
    """The sanitized fragment if it has one of the shapes above, else None. The plain
    shape is tried first: one pass, and no tag to rewrite but its URLs."""
    if _shape(_PLAIN_SHAPE).fullmatch(fragment):
        return _with_urls_joined(fragment, base)
    if _shape(_WIDER_SHAPE).fullmatch(fragment) and _nested(fragment):
        return _with_tags_cleaned(fragment, base)
    return None


def _with_urls_joined(fragment: str, base: str) -> str | None:
    """A fragment of the plain shape cleaned: its URLs joined, its links' rel added."""
    if "<a " not in fragment and "<img " not in fragment:
        return fragment
    pieces = []
    done = 0
    for found in _URL_ATTRIBUTE.finditer(fragment):
        joined = http_join(base, found[2])
        if joined is None:  # a URL only urljoin can judge: nh3 it is
            return None
        pieces += [fragment[done : found.start(2)], joined]
        done = found.end(2)
        if found[1] == "a href":
            pieces.append('"' + _LINK_REL + ">")
            done += 2  # the closing quote and ">"
    pieces.append(fragment[done:])
    return "".join(pieces)


def _nested(fragment: str) -> bool:
    """Whether the inline tags of a fragment of the wider shape are closed in the order
    they were opened, none deeper than _MAX_DEPTH nor open at a paragraph's edge."""
    open_tags: list[str] = []
    for closing, name in _NESTING.findall(fragment):
        if name == "p":
            if open_tags:
                return False
        elif not closing:
            if len(open_tags) == _MAX_DEPTH:
                return False
            open_tags.append(name)
        elif not open_tags or open_tags.pop() != name:
            return False
    return not open_tags


class _OnlyNh3Knows(Exception):
    """A tag whose cleaning only nh3 can tell (a URL urljoin must judge, say)."""


def _with_tags_cleaned(fragment: str, base: str) -> str | None:
    """A fragment of the wider shape cleaned, tag by tag."""

    def clean(found: re.Match[str]) -> str:
        tag = _clean_tag(found[1], found[2], base)
        if tag is None:
            raise _OnlyNh3Knows
        return tag

    try:
        return _TAG_TO_CLEAN.sub(clean, fragment)
    except _OnlyNh3Knows:
        return None


@functools.lru_cache(maxsize=1024)
def _clean_tag(name: str, attributes: str, base: str) -> str | None:
    """A start tag as nh3 writes it back, or None when only nh3 can tell. Kept: a
    feed's paragraphs repeat the same few tags."""
    kept = _KEPT.get(name, _KEPT["*"])
    cleaned = "<" + name
    seen = set()
    for key, value in _ATTRIBUTE.findall(attributes):
        if key in seen:
            continue  # html5ever keeps an attribute's first value
        seen.add(key)
        if key not in kept:
            continue
        if key in URL_ATTRIBUTES:
            # http_join answers only URLs of ASCII letters, digits and marks, which
            # html5ever writes back as they came but for "&".
            joined = http_join(base, value) if "&" not in value else None
            if joined is None:  # a URL only urljoin can judge
                return None
            value = joined
        elif not _KEPT_VALUE.fullmatch(value):
            return None
        cleaned += f' {key}="{value}"'
    return cleaned + (_LINK_REL + ">" if name == "a" else ">")


def clean_html(fragment: str, max_length: int | None = None, base: str = "") -> str:
    """Allow-list sanitize an HTML fragment; relative URLs are resolved against base
    (and dropped when they cannot be made absolute http(s)), or kept as they are
    when there is no base."""
    if not fragment:
        return ""
    known = _clean_known_shape(fragment, base)
    if known is not None:
        cleaned = known
    else:
        cleaned = _nh3(strip_control(fragment), base)
        if "&#" in fragment:  # a character reference may name a control: "&#1;" is "\x01"
            cleaned = strip_control(cleaned)
    if max_length is None:
        return cleaned
    whole, cut = cleaned, max_length
    while len(cleaned) > max_length and cut > 0:
        # Cut, then sanitize again so no tag is left half open; the closing
        # tags put back may overshoot, so cut shorter until it fits.
        cleaned = _nh3(whole[:cut], base)
        cut -= max(len(cleaned) - max_length, 1)
    return cleaned if len(cleaned) <= max_length else ""


def plain_text(fragment: str, max_length: int | None = None, *, markup: bool = True) -> str:
    """A title or name as plain text: tags dropped, entities decoded, space folded,
    display hazards neutralised (see display_safe). With markup=False the value
    already is plain text: its "<" and "&" are text, and stay."""
    text = fragment or ""
    if text.isprintable() and "<" not in text and "&" not in text and "  " not in text:
        # No controls, no tag, no entity, no space but single U+0020 (every other
        # whitespace character, and every hazard but marks, is unprintable): only
        # the ends and stacked marks can change.
        text = _unstacked(text.strip())
    else:
        if markup:
            text = html.unescape(_TAG.sub("", strip_control(text)))
        text = _SPACE.sub(" ", display_safe(strip_control(text))).strip()
    if max_length is not None and len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def has_markup(text: str) -> bool:
    """Whether text holds a real HTML tag or comment (see _REAL_TAG)."""
    return "<" in text and any(
        found[1] is None or found[1].lower() in HTML_ELEMENTS for found in _REAL_TAG.finditer(text)
    )


def display_safe(text: str) -> str:
    """Text without what would change how it, or what is shown around it, looks:
    bidi overrides and isolates and zero-width characters removed, stacks of
    combining marks cut to MAX_MARKS."""
    return _unstacked(_DISPLAY_HAZARDS.sub("", text))


def _unstacked(text: str) -> str:
    if text.isascii():
        return text
    stacked = _STACKED_MARKS
    if stacked is None:
        if not _worth_building(len(text)) and not _has_marks(text):
            return text  # a few short texts without a mark (CJK, say) need no pattern
        stacked = _stacked_marks()
    if stacked.search(text):
        text = stacked.sub(lambda found: found[0][:MAX_MARKS], text)
    return text


# Looking at each character costs ~0.25 us, building the pattern ~13 ms: past this
# many characters looked at, the pattern is cheaper.
_LOOKING_BUDGET = 50_000
_looked_at = 0


def _worth_building(length: int) -> bool:
    global _looked_at
    _looked_at += length
    return _looked_at > _LOOKING_BUDGET


def _has_marks(text: str) -> bool:
    return any(unicodedata.category(c) in _MARKS for c in text)


def _stacked_marks() -> re.Pattern[str]:
    """More than MAX_MARKS combining marks (Mn, Me) in a row. Built on first use (a
    scan of the Basic Multilingual Plane, ~13 ms); marks beyond it are left out,
    which keeps the pattern's class in the fast form (non-BMP ranges cost 20x)."""
    global _STACKED_MARKS
    marks = [c for c in map(chr, range(0x300, 0x10000)) if unicodedata.category(c) in _MARKS]
    spans: list[list[str]] = []
    for mark in marks:
        if spans and ord(spans[-1][1]) == ord(mark) - 1:
            spans[-1][1] = mark
        else:
            spans.append([mark, mark])
    members = "".join(first if first == last else f"{first}-{last}" for first, last in spans)
    _STACKED_MARKS = re.compile(f"[{members}]{{{MAX_MARKS + 1},}}")
    return _STACKED_MARKS


_STACKED_MARKS: re.Pattern[str] | None = None
_MARKS = frozenset({"Mn", "Me"})


# Tags that end a line of text: dropping them must leave a space ("<p>a</p><p>b</p>").
_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:p|br|div|li|ul|ol|dl|dt|dd|h[1-6]|tr|td|th|table|blockquote|pre|hr"
    r"|section|article|header|footer|figure|figcaption)\b[^>]*>",
    re.IGNORECASE,
)
# How wide a title made from an entry's text may be, in columns (a CJK character
# takes two): about what a feed reader's list shows of a title.
TEXT_TITLE_COLUMNS = 80


def shown_title(title: str, summary: str, content: str, link: str) -> str:
    """The title an entry is shown with: its own; for one without, the first words of
    its text (summary, else content), as feed readers title such entries; else its
    link. Never empty."""
    return (
        plain_text(title, markup=False)
        or text_title(summary)
        or text_title(content)
        or strip_control(link).strip()
        or "Untitled"
    )


def text_title(fragment: str, columns: int = TEXT_TITLE_COLUMNS) -> str:
    """The first words of an HTML fragment's text, cut at a word where there are
    spaces, with an ellipsis when cut."""
    text = plain_text(_BLOCK_TAG.sub(" ", fragment or ""))
    widths = itertools.accumulate(
        2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text
    )
    end = next((i for i, used in enumerate(widths) if used > columns - 1), None)  # "…"
    if end is None:
        return text
    cut = text[:end]
    space = cut.rfind(" ")
    if space > len(cut) // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-–—，。、；：") + "…"


def http_base(url: str) -> str:
    """url when relative URLs can be resolved against it into http(s) ones, else ""."""
    return url if url[:8].lower().startswith(("http://", "https://")) else ""


def absolute_http_url(url: str, base: str = "") -> str:
    """An absolute http(s) URL, or "" when the value cannot be one."""
    joined = http_join(base, url) if url and len(url) <= MAX_URL else None
    return _joined_http_url(url, base) if joined is None else joined


def http_join(base: str, url: str) -> str | None:
    """urljoin(base, url) for the common shapes whose answer is known without parsing
    and is an absolute http(s) URL with a host; None when unsure."""
    if _PLAIN_HTTP.match(url):
        # Absolute already: urljoin gives it back unchanged (if the base parses).
        return url if not base or _origin(base) is not None else None
    if url[:1] == "/" and _PLAIN_PATH.match(url) and "/." not in url:
        origin = _origin(base)  # no dot segments: urljoin keeps the path as it is
        return None if origin is None else origin + url
    return None


# An absolute http(s) URL with a plain host that urljoin, strip and strip_control
# leave alone: ASCII, no space, control, fragment, path parameters or empty query.
_PLAIN_HTTP = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[-A-Za-z0-9._~%!$&'()*+,=:@/]*)?"
    r"(?:\?[-A-Za-z0-9._~%!$&'()*+,=:@/?;]+)?\Z"
)
# An absolute path of the same kind ("/uploads/a.jpg"), not a network path ("//host").
_PLAIN_PATH = re.compile(
    r"/(?:[-A-Za-z0-9._~%!$&'()*+,=:@][-A-Za-z0-9._~%!$&'()*+,=:@/]*)?"
    r"(?:\?[-A-Za-z0-9._~%!$&'()*+,=:@/?;]+)?\Z"
)


@functools.lru_cache(maxsize=256)
def _origin(base: str) -> str | None:
    """The "scheme://netloc" of an http(s) base with a host, as urljoin writes it in
    front of an absolute path; None for any other base."""
    try:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        urljoin(base, "/")  # the base must not make urljoin raise either
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _joined_http_url(url: str, base: str) -> str:
    """absolute_http_url for any value: urljoin, then the scheme and host checked."""
    url = strip_control((url or "").strip())
    if not url or len(url) > MAX_URL:
        return ""
    try:
        if base:
            url = urljoin(base, url)
        parts = urlsplit(url)
    except ValueError:  # e.g. a broken IPv6 literal
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return url
