"""RSS 2.0 versions of the published feeds, as the RSS Advisory Board's profile asks
(https://www.rssboard.org/rss-profile).

Written out here rather than by feedgen: the profile wants "&", "<" and ">" in plain
text as hexadecimal character references, which no XML serializer writes, and
feedgen's RSS writer switches the process's locale for every date it formats.
What RSS cannot say is left out: an entry's updated time (pubDate is its published
time) and enclosures beyond the first (the profile's advice: one per item).
Deterministic bytes; tests/rsscheck.py holds every document to the profile.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from aggregator import PROJECT_URL, __version__
from aggregator.config.loader import Config
from aggregator.parse.iri import ascii_link
from aggregator.parse.sanitize import plain_text
from aggregator.parse.xmlchars import strip_control
from aggregator.publish.documents import (
    HISTORY_NS,
    Document,
    EntryView,
    OutputFormat,
    shown_name,
    xml_content,
)

MEDIA_TYPE = "application/rss+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
DC_NS = "http://purl.org/dc/elements/1.1/"
DOCS = "https://www.rssboard.org/rss-specification"
EXCERPT_LENGTH = 500  # characters of the text shown as description when there is no summary

_ROOT = (
    f'<rss xmlns:atom="{ATOM_NS}" xmlns:content="{CONTENT_NS}" xmlns:dc="{DC_NS}" '
    f'xmlns:fh="{HISTORY_NS}" version="2.0">'
)
_TAIL = b"  </channel>\n</rss>\n"


# Escaping by str.replace: str.translate walks CJK text character by character.
def _text(value: str) -> str:
    """Plain text (every element but an item's description and content:encoded)."""
    text = strip_control(value).replace("&", "&#x26;")
    return text.replace("<", "&#x3C;").replace(">", "&#x3E;")


def _markup(value: str) -> str:
    """HTML carried as text."""
    return strip_control(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    text = _markup(value).replace('"', "&quot;")
    return text.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def rfc822(moment: datetime) -> str:
    """A date as RFC 822 with a four-digit year, in UTC: "Fri, 24 Dec 2021 06:24:48 +0000"."""
    return format_datetime(moment.astimezone(UTC))


def _uri(value: str) -> str:
    """A link as RSS needs it: a URI (an IRI's host in IDNA)."""
    return ascii_link(value) or value


def _atom_link(href: str, rel: str, media_type: str = "") -> str:
    typed = f' type="{_attribute(media_type)}"' if media_type else ""
    return f'    <atom:link href="{_attribute(_uri(href))}" rel="{rel}"{typed}/>\n'


def _head(doc: Document, config: Config) -> str:
    settings = config.settings
    lines = [
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        _ROOT,
        "\n  <channel>\n",
        f"    <title>{_text(shown_name(doc.info.title))}</title>\n",
        f"    <link>{_text(_uri(settings.base_url + '/'))}</link>\n",
        f"    <description>{_text(doc.subtitle)}</description>\n",
        _atom_link(doc.self_url, "self", MEDIA_TYPE),
        *(_atom_link(a.url, "alternate", a.media_type) for a in doc.alternates),
    ]
    if doc.hub:
        lines.append(_atom_link(doc.hub, "hub"))
    if doc.archive_number:
        lines.append(_atom_link(doc.current_url, "current", MEDIA_TYPE))
        lines.append("    <fh:archive/>\n")
    if doc.prev_archive:
        lines.append(_atom_link(doc.prev_archive, "prev-archive", MEDIA_TYPE))
    if doc.next_archive:
        lines.append(_atom_link(doc.next_archive, "next-archive", MEDIA_TYPE))
    lines += [
        f"    <language>{_text(settings.language)}</language>\n",
        f"    <lastBuildDate>{rfc822(doc.updated)}</lastBuildDate>\n",
        f"    <generator>{_text(f'aggregator {__version__} ({PROJECT_URL})')}</generator>\n",
        f"    <docs>{DOCS}</docs>\n",
    ]
    return "".join(lines)


def item_fragment(view: EntryView) -> bytes:
    """One entry's <item> element as it stands in a document."""
    lines = ["    <item>\n", f"      <title>{_text(view.title)}</title>\n"]
    if view.link:
        lines.append(f"      <link>{_text(_uri(view.link))}</link>\n")
    # description is the summary (HTML); without one, the first words of the content,
    # for readers that show nothing else. content:encoded holds the whole text.
    description = view.summary or html.escape(plain_text(view.content, EXCERPT_LENGTH), quote=False)
    lines.append(f"      <description>{_markup(description)}</description>\n")
    lines.append(f"      <content:encoded>{_markup(view.content)}</content:encoded>\n")
    author = view.author or (view.source.author if view.source else "")
    if author:
        lines.append(f"      <dc:creator>{_text(author)}</dc:creator>\n")
    for category in view.categories:
        lines.append(
            f'      <category domain="{_attribute(_uri(category.scheme))}">'
            f"{_text(category.label)}</category>\n"
        )
    for url, mime, length in view.enclosures[:1]:
        lines.append(
            f'      <enclosure url="{_attribute(_uri(url))}" length="{max(length, 0)}" '
            f'type="{_attribute(mime or "application/octet-stream")}"/>\n'
        )
    # Our ids are urn:uuid: URIs, never a page to open.
    lines.append(f'      <guid isPermaLink="false">{_text(view.id)}</guid>\n')
    lines.append(f"      <pubDate>{rfc822(view.published)}</pubDate>\n")
    source = view.source
    if source and source.feed_url:
        url = _attribute(_uri(source.feed_url))
        lines.append(f'      <source url="{url}">{_text(source.title)}</source>\n')
    lines.append("    </item>\n")
    return "".join(lines).encode("utf-8", "replace")


def item_fragments(views: Sequence[EntryView]) -> list[bytes]:
    return [item_fragment(view) for view in views]


def assemble_rss(doc: Document, config: Config, items: Sequence[bytes]) -> bytes:
    """The document with these item_fragments as its items."""
    return b"".join((_head(doc, config).encode("utf-8", "replace"), *items, _TAIL))


def render_rss(doc: Document, config: Config) -> bytes:
    return assemble_rss(doc, config, item_fragments(doc.entries))


RSS = OutputFormat(
    name="rss",
    label="RSS 2.0",
    suffix=".rss",
    media_type=MEDIA_TYPE,
    render=render_rss,
    fragments=item_fragments,
    assemble=assemble_rss,
    write_content=xml_content,
    version="2",
    # An RSS version holds less than the Atom one (no updated times, one enclosure
    # per item): the other documents do not send their readers to it.
    announced=False,
)
