"""Where a source without a feed keeps its entries: selectors into an HTML list page
(XPath or CSS) and paths into a JSON API's answer (JMESPath), checked and compiled.

The config file holds them as text; this module says whether a text is a valid
expression (config check) and compiles it once (the parse step reads every poll).

An HTML selector is XPath when it starts with ``/``, ``.``, ``(`` or ``@`` (or is
prefixed ``xpath:``), else CSS (prefix ``css:`` to force it). A CSS selector may end
in ``::text`` (the element's own text) or ``::attr(name)`` (an attribute), as in
Scrapy's parsel. A JSON path is a JMESPath expression, e.g. ``data.list[*]`` or
``cover.url``; dot notation with indices (``items[0].title``) is JMESPath too.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

# cssselect, JMESPath and lxml are imported where an expression is checked or compiled:
# loading a config of feeds only (every command) needs none of them.
if TYPE_CHECKING:
    from jmespath.parser import ParsedResult
    from lxml import etree

# The fields an entry can be given, besides `items`, which selects the entries.
ENTRY_FIELDS = ("guid", "title", "link", "date", "summary", "image", "author")
_PSEUDO = re.compile(r"::(?:text|attr\(\s*([A-Za-z_:][-A-Za-z0-9_:.]*)\s*\))\s*$")
_XPATH_START = ("/", ".", "(", "@")


@dataclass(frozen=True)
class Selectors:
    """A source's `select` table: `items` finds each entry (in a page, relative to the
    document; in JSON, the list), the others a field of one entry (relative to it).
    "" means the field is not selected (HTML pages have defaults, see htmlpage)."""

    items: str = ""
    guid: str = ""
    title: str = ""
    link: str = ""
    date: str = ""
    summary: str = ""
    image: str = ""
    author: str = ""

    def given(self) -> dict[str, str]:
        """The selectors written, by field name, `items` first."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


SELECT_KEYS = tuple(f.name for f in fields(Selectors))


def css_to_xpath(css: str) -> str:
    """A CSS selector (with an optional ::text or ::attr(name) at its end) as XPath,
    relative to the node it is applied to."""
    from cssselect import HTMLTranslator

    pseudo = _PSEUDO.search(css)
    element = css[: pseudo.start()] if pseudo else css
    path = HTMLTranslator().css_to_xpath(element, prefix="descendant-or-self::")
    if pseudo is None:
        return path
    attribute = pseudo.group(1)
    return f"{path}/@{attribute}" if attribute else f"{path}/text()"


def html_expression(selector: str) -> str:
    """The XPath a written HTML selector stands for. Raises ValueError when it is
    neither valid XPath (when it looks like XPath) nor valid CSS."""
    text = selector.strip()
    if text.startswith("xpath:"):
        return _checked_xpath(text[len("xpath:") :].strip())
    if text.startswith("css:"):
        return _css(text[len("css:") :].strip())
    if text.startswith(_XPATH_START):
        return _checked_xpath(text)
    return _css(text)


def _css(css: str) -> str:
    from cssselect import SelectorError

    try:
        return _checked_xpath(css_to_xpath(css))
    except (SelectorError, ValueError) as exc:
        raise ValueError(f"not a valid CSS selector {css!r}: {exc}") from None


def _checked_xpath(path: str) -> str:
    from lxml import etree

    try:
        etree.XPath(path)
    except etree.XPathSyntaxError as exc:
        raise ValueError(f"not a valid XPath expression {path!r}: {exc}") from None
    return path


@functools.lru_cache(maxsize=1024)
def html_selector(selector: str) -> etree.XPath:
    """The compiled XPath of a written HTML selector (checked by the config already)."""
    from lxml import etree

    return etree.XPath(html_expression(selector))


@functools.lru_cache(maxsize=1024)
def json_path(path: str) -> ParsedResult:
    """A compiled JMESPath expression. Raises ValueError when it is not one."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(path)
    except JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression {path!r}: {exc}") from None


def check_selectors(value: Any, kind: str) -> Selectors:
    """A `select` table for a source of `kind` ("html" or "json"), every expression
    checked. Raises ValueError naming the first bad one."""
    if not isinstance(value, dict):
        raise ValueError('expected a table such as { items = "ul.news li", title = "a" }')
    unknown = sorted(set(value) - set(SELECT_KEYS))
    if unknown:
        raise ValueError(f"unknown select key {unknown[0]!r} (known: {', '.join(SELECT_KEYS)})")
    if not isinstance(value.get("items"), str) or not value["items"].strip():
        raise ValueError("select needs `items`: the selector or path of the list of entries")
    checked = {}
    for key, expression in value.items():
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError(f"select.{key}: expected a non-empty string, got {expression!r}")
        try:
            html_expression(expression) if kind == "html" else json_path(expression)
        except ValueError as exc:
            raise ValueError(f"select.{key}: {exc}") from None
        checked[key] = expression.strip()
    return Selectors(**checked)
