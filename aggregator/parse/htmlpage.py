"""Read a news list page (a source of kind "html") into entries, with the source's
selectors (config.selectors: XPath or CSS).

The page is decoded as feeds are (encoding.py: HTTP charset, then its <meta>
charset, then detection, so undeclared GBK pages read right) and parsed by lxml's
HTML parser, which builds a tree from any tag soup, in linear time, with no
entities to expand and nothing fetched. `items` selects each entry's element;
each field's selector is applied to that element. A field's selector that finds
an element gives its text (`link`: its href, `image`: its src, `summary`: its
HTML); one that finds an attribute or text gives that. Links and images resolve
against the page's <base href>, else its URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import lxml.html
from lxml import etree

from aggregator.config.selectors import ENTRY_FIELDS, Selectors, html_selector
from aggregator.errors import ParseError
from aggregator.models import ParsedFeed
from aggregator.parse.encoding import decode
from aggregator.parse.limits import MAX_GUID, FieldLimits
from aggregator.parse.picked import Picked, entries_from_items
from aggregator.parse.sanitize import absolute_http_url, http_base, plain_text
from aggregator.parse.xmlchars import strip_control

# What a field gives when the config selects none: the first link's text and target.
DEFAULT_SELECTORS = {"title": "a", "link": "a::attr(href)"}
# Where an image's address is: lazy-loading pages keep it in data-*, a placeholder in src.
IMAGE_ATTRIBUTES = ("data-original", "data-src", "data-lazy-src", "src")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Page:
    """A list page parsed: its tree and the base its relative links resolve against."""

    root: Any  # lxml.html.HtmlElement
    base: str
    title: str


def read_page(body: bytes, url: str, content_type: str = "") -> Page:
    """Decode and parse a page. Raises ParseError when there is nothing to parse."""
    text = strip_control(decode(body, content_type, html=True).text).lstrip("\ufeff")
    text = _XML_DECLARATION.sub("", text, count=1)  # lxml refuses one in a str
    if not text.strip():
        raise ParseError("the page is empty")
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    try:
        root = lxml.html.document_fromstring(text, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise ParseError(f"not an HTML page: {exc}") from None
    base = http_base(url)
    found = root.find(".//base[@href]")
    if found is not None:
        base = absolute_http_url(found.get("href", ""), base) or base
    title = root.findtext(".//title") or ""
    return Page(root, base, _SPACE.sub(" ", title).strip())


def field_value(result: Any, name: str) -> str:
    """What one selector result gives for a field (see the module's docstring)."""
    if isinstance(result, str):  # an attribute, a text node, string(...)
        return _SPACE.sub(" ", str(result)).strip()
    if isinstance(result, bool | int | float):
        return str(result)
    if not isinstance(result, etree.ElementBase | etree._Element):
        return ""
    if name == "link":
        return (result.get("href") or _text_of(result)).strip()
    if name == "image":
        found = (result.get(a) for a in IMAGE_ATTRIBUTES)
        return next((v.strip() for v in found if v and v.strip()), "")
    if name == "summary":
        return etree.tostring(result, encoding="unicode", method="html", with_tail=False)
    return _text_of(result)


def _text_of(element: Any) -> str:
    return _SPACE.sub(" ", element.text_content()).strip()


def pick(element: Any, selector: str, name: str) -> str:
    """The first non-empty value a field's selector gives within one item."""
    results = html_selector(selector)(element)
    for result in results if isinstance(results, list) else [results]:
        value = field_value(result, name)
        if value:
            return value
    return ""


def item_elements(page: Page, selectors: Selectors) -> list[Any]:
    """The elements `items` selects. Raises ParseError when it selects none: a page
    that changed its layout should show as a failing source, not as a quiet one."""
    found = html_selector(selectors.items)(page.root)
    elements = (
        [e for e in found if isinstance(e, etree._Element)] if isinstance(found, list) else []
    )
    if not elements:
        raise ParseError(f"the items selector {selectors.items!r} matches nothing on the page")
    return elements


def picked_items(page: Page, selectors: Selectors) -> Iterator[Picked]:
    """Each item's values, by field name (empty ones left out)."""
    chosen = {**DEFAULT_SELECTORS, **selectors.given()}
    for element in item_elements(page, selectors):
        values = {
            name: pick(element, chosen[name], name) for name in ENTRY_FIELDS if name in chosen
        }
        yield {name: value for name, value in values.items() if value}


def parse_html_page(
    body: bytes,
    *,
    url: str,
    content_type: str = "",
    selectors: Selectors,
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: FieldLimits | None = None,
    known: Callable[[str], bool] | None = None,
) -> ParsedFeed:
    """The page's entries; items whose digest `known` has are skipped unread."""
    limits = limits or FieldLimits()
    page = read_page(body, url, content_type)
    entries, skipped = entries_from_items(
        picked_items(page, selectors), page.base, timezone, seen_at, limits, known
    )
    return ParsedFeed(
        version="html",
        title=plain_text(page.title, limits.title, markup=False),
        link=absolute_http_url(url),
        feed_id=strip_control(url)[:MAX_GUID],
        entries=entries,
        skipped=skipped,
    )
