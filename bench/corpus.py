"""A deterministic synthetic corpus shaped like Sanqin Metropolis Daily's feeds.

Chinese titles, 2-4 KB HTML bodies, share-code links
(``NewsShare.html?infoCode=NW...``), about 10% of entries also carried by another
source under another guid, about 10% of feeds in GBK. Everything comes from one
seeded random generator, so a corpus is the same bytes on every machine.

The bodies come in one of two markups, the same words either way:

- "seed": the shape of the seed article (tests/fixtures/seed): bare paragraphs,
  bold headings, images and the share link, as that site publishes them;
- "cms": the shape many newsroom editors write: indented paragraphs (inline styles
  and runs of &nbsp;), line breaks written as XHTML, centred images with sizes,
  spans with fonts: not the sanitizer's plain shape but its wider one
  (aggregator.parse.sanitize), with attributes to drop and tags to rewrite.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from xml.sax.saxutils import escape, quoteattr

SHARE = "http://finews.example.cn/html_News/NewsShare.html?infoCode="
# Common characters of news prose, written out here (not taken from any corpus).
HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
    "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点"
    "从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原"
    "又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革"
    "位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强"
    "放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交"
    "受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八"
    "离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布"
    "复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精"
)
SECTIONS = ("要闻", "交通", "城市", "民生", "经济", "教育", "文化", "体育", "健康", "法治")
PUNCT = "，，，。、；："
_CST = timezone(timedelta(hours=8))  # Beijing time, as the feeds write it
MARKUPS = ("seed", "cms")
_INDENT = '<p style="text-indent: 2em;">&nbsp;&nbsp;'


@dataclass(frozen=True)
class Article:
    code: str  # the share code, NW + 18 digits
    title: str
    body: str  # HTML
    published: datetime
    section: str


@dataclass
class Feed:
    """One source's document: its entries (articles under this source's guids)."""

    index: int
    kind: str  # "rss", "atom", "rss-gbk"
    entries: list[tuple[str, Article]] = field(default_factory=list)  # (guid, article)

    @property
    def path(self) -> str:
        return f"/feeds/{self.index:05d}.xml"

    @property
    def content_type(self) -> str:
        if self.kind == "atom":
            return "application/atom+xml; charset=utf-8"
        if self.kind == "rss-gbk":
            return "application/rss+xml; charset=gbk"
        return "application/rss+xml; charset=utf-8"


class Corpus:
    """feeds x entries, generated from a seed; render(feed) gives the bytes."""

    def __init__(
        self,
        feeds: int,
        entries: int,
        *,
        seed: int = 20211224,
        duplicates: float = 0.10,
        gbk: float = 0.10,
        atom: float = 0.10,
        markup: str = "seed",
    ) -> None:
        if markup not in MARKUPS:
            raise ValueError(f"markup {markup!r}: one of {', '.join(MARKUPS)}")
        self.seed = seed
        self.markup = markup
        self.rng = random.Random(seed)
        self.start = datetime(2021, 12, 24, 3, 0, 26, tzinfo=UTC)
        self.serial = 0
        self.feeds: list[Feed] = []
        pool: list[Article] = []
        for index in range(feeds):
            roll = self.rng.random()
            kind = "rss-gbk" if roll < gbk else "atom" if roll < gbk + atom else "rss"
            feed = Feed(index, kind)
            for number in range(entries):
                if pool and self.rng.random() < duplicates:
                    article = self.rng.choice(pool)  # carried by another source too
                else:
                    article = self.article()
                    pool.append(article)
                feed.entries.append((f"s{index:05d}-{number:04d}", article))
            self.feeds.append(feed)

    # --- text ---

    def words(self, low: int, high: int) -> str:
        n = self.rng.randint(low, high)
        return "".join(self.rng.choices(HANZI, k=n))

    def sentence(self) -> str:
        parts = [self.words(4, 12) for _ in range(self.rng.randint(2, 4))]
        return self.rng.choice(PUNCT[:3]).join(parts) + "。"

    def article(self) -> Article:
        self.serial += 1
        published = self.start - timedelta(minutes=7 * self.serial)
        code = f"NW{published:%Y%m%d%H%M%S}{self.serial:04d}"
        title = self.words(8, 16) + " " + self.words(4, 8)
        if self.rng.random() < 0.2:
            title = f"“{self.words(3, 6)}”" + title
        size = self.rng.randint(2048, 4096)
        body = self.body(published, code, size)
        return Article(code, title, body, published, self.rng.choice(SECTIONS))

    def body(self, published: datetime, code: str, size: int) -> str:
        """Paragraphs until their seed markup holds `size` bytes, then the share link and
        the source line: the same random draws, so the same words, in either markup."""
        paragraphs: list[str] = []
        written = 0
        while written < size:
            seed, cms = self.paragraph(published, len(paragraphs))
            written += len(seed.encode())
            paragraphs.append(cms if self.markup == "cms" else seed)
        paragraphs.append(f'<p>原文：<a href="{SHARE}{code}">{self.words(4, 8)}</a></p>')
        paragraphs.append('<p class="em_media">（文章来源：三秦都市报）</p>')
        return "\n ".join(paragraphs)

    def paragraph(self, published: datetime, number: int) -> tuple[str, str]:
        """One paragraph in the seed's markup and in the CMS one."""
        roll = self.rng.random()
        if roll < 0.15:
            words = self.words(6, 14)
            return (
                f"<p><strong>{words}</strong></p>",
                f'<p><span style="font-family: 宋体;"><b>{words}</b></span></p>',
            )
        if roll < 0.2:
            image = f"/uploads/{published:%Y%m}/{self.serial}-{number}.jpg"
            alt = self.words(4, 8)
            return (
                f'<p><img src="{image}" alt="{alt}"></p>',
                f'<p style="text-align: center;"><img src="{image}" alt="{alt}" '
                'width="600" height="400" border="0" /></p>',
            )
        sentences = [self.sentence() for _ in range(3)]
        return "<p>" + "".join(sentences) + "</p>", _INDENT + "<br />".join(sentences) + "</p>"

    # --- change over time ---

    def add_entry(self, feed: Feed) -> Article:
        """A new article at the top of one feed (as a newsroom publishes)."""
        article = self.article()
        article = Article(
            article.code,
            article.title,
            article.body,
            self.start + timedelta(minutes=self.serial),
            article.section,
        )
        feed.entries.insert(0, (f"s{feed.index:05d}-n{self.serial:06d}", article))
        return article

    # --- documents ---

    def render(self, feed: Feed, base: str = "http://finews.example.cn") -> bytes:
        if feed.kind == "atom":
            return self._atom(feed, base)
        encoding = "gbk" if feed.kind == "rss-gbk" else "utf-8"
        return self._rss(feed, base, encoding)

    def _rss(self, feed: Feed, base: str, encoding: str) -> bytes:
        items = []
        for guid, article in feed.entries:
            date = article.published.astimezone(_CST).strftime("%a, %d %b %Y %H:%M:%S +0800")
            items.append(
                "<item>"
                f"<title>{escape(article.title)}</title>"
                f"<link>{escape(SHARE + article.code)}&amp;from=s{feed.index}</link>"
                f'<guid isPermaLink="false">{guid}</guid>'
                f"<pubDate>{date}</pubDate>"
                f"<category>{article.section}</category>"
                f"<description><![CDATA[{article.body}]]></description>"
                "</item>"
            )
        text = (
            f'<?xml version="1.0" encoding="{encoding}"?>\n<rss version="2.0"><channel>'
            f"<title>三秦都市报 · 第{feed.index}版</title>"
            f"<link>{base}/sanqin/{feed.index}/</link>"
            "<description>三秦都市报（合成数据）</description><language>zh-cn</language>"
            "<ttl>30</ttl>" + "".join(items) + "</channel></rss>"
        )
        return text.encode(encoding)

    def _atom(self, feed: Feed, base: str) -> bytes:
        entries = []
        for guid, article in feed.entries:
            date = article.published.astimezone(_CST).isoformat()
            entries.append(
                "<entry>"
                f"<title>{escape(article.title)}</title>"
                f"<id>tag:finews.example.cn,2021:{guid}</id>"
                f'<link rel="alternate" href={quoteattr(SHARE + article.code)}/>'
                f"<published>{date}</published><updated>{date}</updated>"
                f'<category term="{article.section}"/>'
                f'<content type="html">{escape(article.body)}</content>'
                "</entry>"
            )
        text = (
            '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>三秦都市报 · 第{feed.index}版</title>"
            f"<id>tag:finews.example.cn,2021:feed-{feed.index}</id>"
            f'<link rel="alternate" href="{base}/sanqin/{feed.index}/"/>'
            f'<link rel="self" href="{base}/feeds/{feed.index}.xml"/>'
            "<updated>2021-12-24T03:00:26+08:00</updated>"
            "<author><name>三秦都市报</name></author>" + "".join(entries) + "</feed>"
        )
        return text.encode("utf-8")
