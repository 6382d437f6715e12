"""Check an RSS 2.0 document against the RSS Advisory Board's profile
(https://www.rssboard.org/rss-profile), the rules a publisher can be held to:

- XML 1.0 in UTF-8, no control characters; root rss version="2.0" with one channel;
- RSS elements in no namespace, only those the specification defines, each at most once
  where it says so, holding text only (3.1); plain text with "&", "<" and ">" written
  as hexadecimal character references (3.1), as the W3C validator's CharacterData rule;
- channel title, link and description present and not empty (4.1); an atom:link
  rel="self" of type application/rss+xml (5.1);
- every date RFC 822 with a four-digit year and the right day of the week (3.2);
- items with a title or a description, a guid that is a URL unless isPermaLink="false"
  (and unique in the document), links and source URLs absolute http(s) URIs (ASCII:
  the W3C validator's UriNotIri);
- enclosures with url, length (a whole number) and type, one per item at most (4.2.7);
- item descriptions and content:encoded as HTML with absolute links (4.2.4, 5.2), but
  where relative_links allows them: a file: source's links are kept as written (README),
  in every format.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import lxml.html
from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
# XML 1.0's illegal characters never parse; these parse but are controls all the same.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
RFC822 = re.compile(
    r"^(?:(?P<day>Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}(?::\d{2})? (?:[+-]\d{4}|GMT|UT|EST|EDT|CST|CDT|MST|MDT|PST|PDT|Z)$"
)
MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(?:\s*;.*)?$")
# Elements the specification defines, and those of them that may repeat.
CHANNEL = {
    "title", "link", "description", "language", "copyright", "managingEditor", "webMaster",
    "pubDate", "lastBuildDate", "category", "generator", "docs", "cloud", "ttl", "image",
    "rating", "textInput", "skipHours", "skipDays", "item",
}  # fmt: skip
ITEM = {
    "title", "link", "description", "author", "category", "comments", "enclosure", "guid",
    "pubDate", "source",
}  # fmt: skip
REPEATED = {"category", "item"}
WITH_CHILDREN = {"image", "cloud", "textInput", "skipHours", "skipDays"}
# Plain-text elements whose contents the raw text is checked for (3.1).
PLAIN = ("title", "link", "author", "category", "comments", "guid", "source", "dc:creator")
_ESCAPED = re.compile(r"&(?:amp|lt|gt);|<!\[CDATA\[")


def _http(url: str) -> bool:
    """An absolute http(s) URI: ASCII (RSS holds URIs, not IRIs), no space."""
    parts = urlsplit(url)
    scheme_and_host = parts.scheme in ("http", "https") and bool(parts.netloc)
    return scheme_and_host and url.isascii() and " " not in url


def _date_problem(where: str, text: str) -> str | None:
    match = RFC822.match(text)
    if not match:
        return f"{where}: not an RFC 822 date with a four-digit year: {text!r}"
    moment = parsedate_to_datetime(text)
    if match["day"] and DAYS[moment.weekday()] != match["day"]:
        return f"{where}: {text!r} is not a {match['day']}"
    return None


def _raw_problems(text: str) -> list[str]:
    """Plain text written with entity or CDATA escapes instead of hexadecimal
    references (the channel description is plain text; an item's is HTML)."""
    found = []
    head, _, items = text.partition("<item>")
    chunks = [("channel", head, (*PLAIN, "description"))]
    chunks += [(f"item {n}", chunk, PLAIN) for n, chunk in enumerate(items.split("<item>"), 1)]
    for where, chunk, names in chunks:
        for name in names:
            for body in re.findall(rf"<{name}(?:\s[^>]*)?>(.*?)</{name}>", chunk, re.S):
                if _ESCAPED.search(body):
                    found.append(f"{where}: {name} escapes plain text other than by &#x..;")
    return found


def _children_problems(parent: etree._Element, allowed: set[str], where: str) -> list[str]:
    found = []
    counts: dict[str, int] = {}
    for child in parent:
        if not isinstance(child.tag, str):
            continue  # a comment or processing instruction
        if child.tag.startswith("{"):
            continue  # a namespaced extension: none of the RSS rules apply to it
        if child.tag not in allowed:
            found.append(f"{where}: {child.tag} is not an RSS 2.0 element here")
        counts[child.tag] = counts.get(child.tag, 0) + 1
        if child.tag not in WITH_CHILDREN | {"item"} and len(child):
            found.append(f"{where}: {child.tag} holds elements, not text")
    found += [
        f"{where}: {name} appears {count} times"
        for name, count in counts.items()
        if count > 1 and name not in REPEATED
    ]
    return found


def _html_problems(where: str, markup: str, relative_links: bool) -> list[str]:
    if relative_links or not markup.strip():
        return []
    found = []
    for element in lxml.html.fragments_fromstring(f"<div>{markup}</div>")[0].iter():
        for name in ("href", "src"):
            url = element.get(name) if isinstance(element.tag, str) else None
            if url is not None and not (_http(url) or url.startswith(("mailto:", "data:"))):
                found.append(f"{where}: relative or odd URL {url!r} in HTML")
    return found


def _item_problems(
    item: etree._Element, where: str, guids: set[str], relative_links: bool
) -> list[str]:
    found = _children_problems(item, ITEM, where)
    if not (item.findtext("title") or item.findtext("description")):
        found.append(f"{where}: neither a title nor a description")
    guid = item.find("guid")
    if guid is None:
        found.append(f"{where}: no guid")
    else:
        value = (guid.text or "").strip()
        permalink = guid.get("isPermaLink", "true")
        if permalink not in ("true", "false"):
            found.append(f"{where}: isPermaLink is {permalink!r}")
        if permalink == "true" and not _http(value):
            found.append(f"{where}: guid {value!r} is no URL but isPermaLink is not false")
        if value in guids:
            found.append(f"{where}: guid {value!r} given twice")
        guids.add(value)
    link = item.findtext("link")
    if link is not None and not _http(link.strip()):
        found.append(f"{where}: link {link!r} is not an absolute http(s) URL")
    enclosures = item.findall("enclosure")
    if len(enclosures) > 1:
        found.append(f"{where}: more than one enclosure")
    for enclosure in enclosures:
        length, kind = enclosure.get("length", ""), enclosure.get("type", "")
        if not _http(enclosure.get("url", "")):
            found.append(f"{where}: enclosure url {enclosure.get('url')!r} is not http(s)")
        if not length.isdigit():
            found.append(f"{where}: enclosure length {length!r} is not a whole number")
        if not MEDIA_TYPE.match(kind):
            found.append(f"{where}: enclosure type {kind!r} is not a MIME type")
    for source in item.findall("source"):
        if not _http(source.get("url", "")):
            found.append(f"{where}: source url {source.get('url')!r} is not http(s)")
    for category in item.findall("category"):
        if not (category.text or "").strip():
            found.append(f"{where}: empty category")
        if category.get("domain") is not None and not _http(category.get("domain", "")):
            found.append(f"{where}: category domain {category.get('domain')!r} is no URI")
    date = item.findtext("pubDate")
    if date is not None and (problem := _date_problem(f"{where}: pubDate", date)):
        found.append(problem)
    for name, markup in (
        ("description", item.findtext("description")),
        ("content:encoded", item.findtext(f"{CONTENT}encoded")),
    ):
        found += _html_problems(f"{where}: {name}", markup or "", relative_links)
    return found


def problems(data: bytes, *, relative_links: bool = False) -> list[str]:
    """Every way the document breaks the profile's rules above. Empty when valid."""
    try:
        text = data.decode("utf-8")
        root = etree.fromstring(data)
    except (UnicodeDecodeError, etree.XMLSyntaxError) as exc:
        return [f"not UTF-8 XML: {exc}"]
    found: list[str] = []
    if CONTROL.search(text):
        found.append("control characters in the document")
    if root.tag != "rss" or root.get("version") != "2.0":
        return [*found, f'root is {root.tag!r} version {root.get("version")!r}, not rss "2.0"']
    channels = root.findall("channel")
    if len(channels) != 1 or len(root) != 1:
        return [*found, "rss must hold exactly one channel and nothing else"]
    channel = channels[0]
    found += _children_problems(channel, CHANNEL, "channel")
    for name in ("title", "link", "description"):
        if not (channel.findtext(name) or "").strip():
            found.append(f"channel: no {name}")
    if not _http((channel.findtext("link") or "").strip()):
        found.append("channel: link is not an absolute http(s) URL")
    selfs = [link for link in channel.findall(f"{ATOM}link") if link.get("rel") == "self"]
    if len(selfs) != 1:
        found.append(f"channel: {len(selfs)} atom:link rel=self, not one")
    elif selfs[0].get("type") != "application/rss+xml" or not _http(selfs[0].get("href", "")):
        found.append("channel: atom:link rel=self needs an http(s) href and the RSS media type")
    for link in channel.findall(f"{ATOM}link"):
        if not (_http(link.get("href", "")) and link.get("rel")):
            found.append(f"channel: atom:link {link.get('href')!r} without http(s) URI or rel")
    for name in ("pubDate", "lastBuildDate"):
        date = channel.findtext(name)
        if date is not None and (problem := _date_problem(f"channel: {name}", date)):
            found.append(problem)
    guids: set[str] = set()
    for number, item in enumerate(channel.findall("item"), 1):
        found += _item_problems(item, f"item {number}", guids, relative_links)
    found += _raw_problems(text)
    return found


def assert_valid(data: bytes) -> None:
    found = problems(data)
    assert not found, "\n".join(found)
