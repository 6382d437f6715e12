"""Build feed documents for tests, in the shape of Sanqin Metropolis Daily."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

SHARE = "http://finews.example.cn/html_News/NewsShare.html?infoCode="


@dataclass
class Item:
    code: str
    title: str
    guid: str = ""
    body: str = "<p>正文。</p>"
    date: str = "Fri, 24 Dec 2021 03:00:26 +0800"
    link_extra: str = ""
    categories: list[str] = field(default_factory=list)

    @property
    def link(self) -> str:
        return SHARE + self.code + self.link_extra


def rss(
    items: list[Item],
    title: str = "三秦都市报",
    link: str = "http://finews.example.cn/",
    extra_channel: str = "",
    encoding: str = "utf-8",
    declare: str | None = None,
) -> bytes:
    parts = []
    for item in items:
        cats = "".join(f"<category>{escape(c)}</category>" for c in item.categories)
        parts.append(
            "<item>"
            f"<title>{escape(item.title)}</title>"
            f"<link>{escape(item.link)}</link>"
            f'<guid isPermaLink="false">{escape(item.guid or item.code)}</guid>'
            f"<pubDate>{item.date}</pubDate>{cats}"
            f"<description>{escape(item.body)}</description>"
            "</item>"
        )
    declared = encoding if declare is None else declare
    text = (
        f'<?xml version="1.0" encoding="{declared}"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<description>测试</description>{extra_channel}{''.join(parts)}</channel></rss>"
    )
    return text.encode(encoding)


def atom(
    items: list[Item], title: str = "三秦都市报 · 交通", feed_id: str = "tag:example.cn,2021:feed"
) -> bytes:
    parts = []
    for item in items:
        parts.append(
            "<entry>"
            f"<title>{escape(item.title)}</title>"
            f"<id>{escape(item.guid or 'urn:x:' + item.code)}</id>"
            f'<link rel="alternate" href="{escape(item.link)}"/>'
            "<published>2021-12-24T03:00:26+08:00</published>"
            "<updated>2021-12-24T03:00:26+08:00</updated>"
            f'<content type="html">{escape(item.body)}</content>'
            "</entry>"
        )
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>{feed_id}</id>"
        '<link rel="alternate" href="http://finews.example.cn/jiaotong/"/>'
        "<updated>2021-12-24T03:00:26+08:00</updated>"
        f"{''.join(parts)}</feed>"
    )
    return text.encode("utf-8")


def rss_entries(entries: list[dict[str, str]], title: str = "A feed") -> bytes:
    """An RSS 2.0 document whose items have exactly the elements given: title, link,
    guid (isPermaLink="false" unless "permalink" is set), pubDate, description."""
    parts = []
    for entry in entries:
        item = []
        for key, element in (("title", "title"), ("link", "link"), ("date", "pubDate")):
            if key in entry:
                item.append(f"<{element}>{escape(entry[key])}</{element}>")
        if "guid" in entry:
            permalink = "true" if entry.get("permalink") else "false"
            item.append(f'<guid isPermaLink="{permalink}">{escape(entry["guid"])}</guid>')
        if "body" in entry:
            item.append(f"<description>{escape(entry['body'])}</description>")
        parts.append(f"<item>{''.join(item)}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>http://example.org/</link>"
        f"<description>{escape(title)}</description>{''.join(parts)}</channel></rss>"
    ).encode()
