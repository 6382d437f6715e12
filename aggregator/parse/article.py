"""The article on an article page: its main content as sanitized HTML, for sources with
`full_text` (config.loader.FullText).

With a selector, what it selects on the page. Without, what gne (GeneralNewsExtractor,
made for Chinese news pages: it scores each node by text and punctuation density
against its links) finds: it kept the whole text of 6 of the 7 article pages of
tests/articles.py with no navigation, ad or comment text, where readability-lxml
kept 5, trafilatura 4 and newspaper4k 3 (bench/extractors.py; BENCHMARKS.md). The
page is decoded as list pages are (encoding.py, <meta> charset included), and the
result is sanitized like any content (sanitize.clean_html), relative URLs resolved
against the page.
"""

from __future__ import annotations

import logging

import lxml.html
from lxml import etree

from aggregator.config.selectors import html_selector
from aggregator.errors import ParseError
from aggregator.parse.htmlpage import read_page
from aggregator.parse.limits import MAX_CONTENT, ParseLimits
from aggregator.parse.sandbox import parsed_in_worker
from aggregator.parse.sanitize import clean_html, plain_text

# Less text than this (characters, spaces aside) is no article: a paywall, a video
# page, an error page, or an extractor that picked a caption.
MIN_ARTICLE_CHARACTERS = 40


def selected_html(root: etree._Element, selector: str) -> str:
    """The HTML of every element the selector finds, in document order."""
    found = html_selector(selector)(root)
    elements = (
        [e for e in found if isinstance(e, etree._Element)] if isinstance(found, list) else []
    )
    if not elements:
        raise ParseError(f"the full_text selector {selector!r} matches nothing on the article page")
    return "".join(etree.tostring(e, encoding="unicode", method="html") for e in elements)


def automatic_html(text: str) -> str:
    """The main content's HTML that gne finds in a page's (decoded) HTML."""
    from gne import GeneralNewsExtractor  # loads its settings on first use
    from gne.exceptions import NoContentException

    logging.getLogger("gne").setLevel(logging.WARNING)
    try:
        found = GeneralNewsExtractor().extract(text, with_body_html=True)
    except NoContentException:
        raise ParseError("no article text found on the page") from None
    except (ValueError, etree.LxmlError) as exc:
        raise ParseError(f"the article page could not be read: {exc}") from None
    return str(found.get("body_html") or "")


def extract_article(
    body: bytes,
    *,
    url: str,
    content_type: str = "",
    selector: str = "",
    max_length: int = MAX_CONTENT,
) -> str:
    """The article's sanitized HTML. Raises ParseError when there is none."""
    page = read_page(body, url, content_type)
    if selector:
        fragment = selected_html(page.root, selector)
    else:
        fragment = automatic_html(lxml.html.tostring(page.root, encoding="unicode"))
    cleaned = clean_html(fragment, max_length, page.base)
    if len("".join(plain_text(cleaned).split())) < MIN_ARTICLE_CHARACTERS:
        raise ParseError("no article text found on the page")
    return cleaned


def read_article(
    body: bytes, *, url: str, content_type: str, selector: str, limits: ParseLimits
) -> str:
    """extract_article within the parse limits: here when the page is small, else in the
    sandbox (a script-laden or huge page is the article site's, not the source's)."""
    if len(body) <= limits.inline_max_bytes:
        return extract_article(
            body,
            url=url,
            content_type=content_type,
            selector=selector,
            max_length=limits.fields.content,
        )
    arguments = {
        "body": body,
        "url": url,
        "content_type": content_type,
        "selector": selector,
        "max_length": limits.fields.content,
    }
    return parsed_in_worker(extract_article, arguments, limits)
