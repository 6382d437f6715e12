"""The lists of published feeds: ``index.html`` for people, ``feeds.opml`` for readers.

Both list every feed (all, categories, tags, sources) under its own name, in
its own script, and change only when the set of feeds, their names or the output
formats change. The index links and announces (autodiscovery) every format;
feeds.opml points at the first format of the `formats` setting: one subscription
per feed, and Atom by default, the fullest (updated times, every enclosure).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, Sequence

from lxml import etree

from aggregator.config.loader import Config
from aggregator.parse.xmlchars import strip_control
from aggregator.publish.documents import FeedInfo, OutputFormat

KINDS = ("all", "category", "tag", "source")
HEADINGS = {
    "en": {
        "all": "Everything",
        "category": "Categories",
        "tag": "Tags",
        "source": "Sources",
        "formats": "Subscribe in a feed reader: {formats}, or all feeds at once as OPML",
        "and": ", ",
    },
    "zh": {
        "all": "全部",
        "category": "分类",
        "tag": "标签",
        "source": "来源",
        "formats": "用阅读器订阅：{formats}，或用 OPML 一次导入全部订阅",
        "and": "、",
    },
}
OPML_PATH = "feeds.opml"
INDEX_PATH = "index.html"
LISTING_FILES = (INDEX_PATH, OPML_PATH)


def headings(config: Config) -> dict[str, str]:
    return HEADINGS.get(config.settings.language.split("-")[0].lower(), HEADINGS["en"])


def _groups(infos: Sequence[FeedInfo]) -> list[tuple[str, list[FeedInfo]]]:
    return [(kind, [i for i in infos if i.key[0] == kind]) for kind in KINDS]


def render_index(
    config: Config,
    infos: Sequence[FeedInfo],
    formats: Sequence[OutputFormat],
    url_of: Callable[[str], str],
) -> bytes:
    """The page, encoded line by line: with tens of thousands of sources it runs to tens
    of megabytes, and one string of it and its copies would hold several times that."""
    lines = _index_lines(config, infos, formats, url_of)
    return b"\n".join(strip_control(line).encode("utf-8", "replace") for line in lines)


def _index_lines(
    config: Config,
    infos: Sequence[FeedInfo],
    formats: Sequence[OutputFormat],
    url_of: Callable[[str], str],
) -> Iterator[str]:
    settings = config.settings
    words = headings(config)
    esc = html.escape
    yield "<!DOCTYPE html>"
    yield f'<html lang="{esc(settings.language)}">'
    yield "<head>"
    yield '<meta charset="utf-8">'
    yield '<meta name="viewport" content="width=device-width, initial-scale=1">'
    yield f"<title>{esc(settings.title)}</title>"
    # Autodiscovery: the first format under the feed's own title, the others marked.
    marks = ["", *(f" ({f.label})" for f in formats[1:])]
    for i in infos:
        for f, marked in zip(formats, marks, strict=True):
            yield (
                f'<link rel="alternate" type="{f.media_type}" title="{esc(i.title)}{marked}" '
                f'href="{esc(url_of(i.file(f.suffix)))}">'
            )
    yield f'<link rel="outline" type="text/x-opml" title="OPML" href="{esc(url_of(OPML_PATH))}">'
    yield "</head>"
    yield "<body>"
    offered = words["formats"].format(formats=words["and"].join(f.label for f in formats))
    yield f"<h1>{esc(settings.title)}</h1>"
    yield f'<p>{esc(offered)}: <a href="{OPML_PATH}">{OPML_PATH}</a></p>'
    for kind, items in _groups(infos):
        if not items:
            continue
        yield f"<h2>{esc(words[kind])}</h2>\n<ul>"
        for i in items:
            links = " · ".join(
                f'<a href="{esc(i.file(f.suffix))}" type="{f.media_type}">{esc(f.label)}</a>'
                for f in formats
            )
            yield (
                f'<li><a href="{esc(i.file(formats[0].suffix))}">{esc(i.title)}</a>'
                f" — {esc(i.subtitle)} <small>({links})</small></li>"
            )
        yield "</ul>"
    yield "</body>"
    yield "</html>"
    yield ""  # the page ends with a newline


def render_opml(
    config: Config,
    infos: Sequence[FeedInfo],
    formats: Sequence[OutputFormat],
    url_of: Callable[[str], str],
) -> bytes:
    """OPML 2.0: one outline per feed, grouped like the index page, pointing at the
    feed's document in the first format (type "rss" is OPML's word for any feed)."""
    settings = config.settings
    words = headings(config)
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = strip_control(settings.title)
    etree.SubElement(head, "ownerName").text = strip_control(settings.author)
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    for kind, items in _groups(infos):
        if not items:
            continue
        group = etree.SubElement(body, "outline", text=words[kind], title=words[kind])
        for i in items:
            title = strip_control(i.title)
            outline = etree.SubElement(group, "outline")
            # Attribute order is fixed (insertion order), so the bytes are deterministic.
            outline.set("type", "rss")
            outline.set("text", title)
            outline.set("title", title)
            outline.set("xmlUrl", url_of(i.file(formats[0].suffix)))
            outline.set("htmlUrl", settings.base_url + "/")
            outline.set("description", strip_control(i.subtitle))
            outline.set("language", settings.language)
    return bytes(etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8"))
