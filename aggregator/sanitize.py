"""Make text from untrusted feeds safe to store and republish. Pure functions.

HTML goes through an allow-list sanitizer (nh3): no scripts, no event
handlers, no forms, only http(s) and mailto URLs. Every string loses the
control characters XML cannot carry.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

import nh3

# Characters XML 1.0 forbids (C0 controls but tab/LF/CR, surrogates, U+FFFE/F).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")

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


def strip_control(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


# Built once: nh3.clean() rebuilds its sanitizer from these sets on every call,
# which costs as much as the sanitizing itself.
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    link_rel="noopener noreferrer",
    strip_comments=True,
)
_RECUT_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    link_rel="noopener noreferrer",
)


def clean_html(fragment: str, max_length: int | None = None) -> str:
    """Allow-list sanitize an HTML fragment."""
    if not fragment:
        return ""
    cleaned = str(_CLEANER.clean(strip_control(fragment)))
    if max_length is not None and len(cleaned) > max_length:
        # Cut on text, then sanitize again so no tag is left half open.
        cleaned = str(_RECUT_CLEANER.clean(cleaned[:max_length]))
    return cleaned


def plain_text(fragment: str, max_length: int | None = None) -> str:
    """A title or name as plain text: tags dropped, entities decoded, space folded."""
    text = html.unescape(_TAG.sub("", strip_control(fragment or "")))
    text = _SPACE.sub(" ", strip_control(text)).strip()
    if max_length is not None and len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def absolute_http_url(url: str, base: str = "") -> str:
    """An absolute http(s) URL, or "" when the value cannot be one."""
    url = strip_control((url or "").strip())
    if not url:
        return ""
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:
            return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return url
