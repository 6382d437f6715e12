"""Publish entries as static-site (Jekyll) posts, and read such posts back.

A post is YAML front matter (layout, a double-quoted title, the date in the
source's zone, category slugs, tag names), then the article HTML ending with
the source attribution paragraph, the share link in angle brackets, and a line
of back links. ``render_post`` and ``read_post`` are pure and inverse to each
other; ``PostWriter`` and ``import_posts`` do the file and database work.

Writing uses a small emitter of our own, because the shape must match the
example site byte for byte (PyYAML's emitter would choose its own quoting and
line folding). Reading uses PyYAML's ``safe_load``, because posts from an
existing site may use any YAML style for the same keys.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from aggregator.config.loader import Config, PostsSettings, Source
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.errors import AggregatorError
from aggregator.files import FolderLock, remove_temps, write_if_changed
from aggregator.identity.sharecode import share_code
from aggregator.models import EntryRecord
from aggregator.parse import iri
from aggregator.parse.limits import MAX_CONTENT
from aggregator.parse.sanitize import clean_html
from aggregator.parse.xmlchars import strip_control
from aggregator.store.interface import Storage
from aggregator.store.records import StoredArticle

log = logging.getLogger("aggregator.posts")

DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
ATTRIBUTION = '<p class="em_media">（文章来源：{}）</p>'
IMPORT_RULE = "import"


class PostFormatError(AggregatorError):
    """A file is not a post we can read."""


@dataclass(frozen=True)
class PostData:
    """Everything a post file says, as plain values."""

    title: str
    date: datetime  # aware, in the zone the post is written in
    categories: tuple[str, ...]  # slugs
    tags: tuple[str, ...]  # names
    html: str  # the article, attribution paragraph included
    link: str = ""  # the original share link
    footer: str = ""  # the back-links line, as written
    layout: str = "post"
    code: str = ""  # the share code, written only when the link does not give it


# --- YAML scalars: exactly the quoting the example uses, valid for any text -----------

_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}
# Characters YAML cannot carry raw in a double-quoted scalar, or would fold as line breaks.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
# Words YAML 1.1 (PyYAML, Ruby's Psych) would read as booleans or null.
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"}


def yaml_quoted(text: str) -> str:
    """A double-quoted YAML scalar that reads back as exactly ``text``."""
    out = []
    for char in text:
        if char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif _UNPRINTABLE.match(char):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def plain_ok(text: str) -> bool:
    """Whether text can stand unquoted and still read back as this string.

    Deliberately narrow: a letter first, then letters, digits and ``-_./``.
    """
    if not text or text.lower() in _YAML_WORDS:
        return False
    if not (text[0].isalpha() or text[0] == "_"):
        return False
    return all(c.isalnum() or c in "-_./" for c in text)


def yaml_words(items: Sequence[str]) -> str:
    """Categories or tags: space separated like the example when safe, else a flow list."""
    if items and all(plain_ok(item) for item in items):
        return " ".join(items)
    return "[" + ", ".join(i if plain_ok(i) else yaml_quoted(i) for i in items) + "]"


# --- one post as text ------------------------------------------------------------------


def _autolink(url: str) -> str:
    """A URL as it can sit in <...>: no spaces or angle brackets."""
    return re.sub(r"[\s<>]", lambda m: f"%{ord(m.group(0)):02X}", url)


# Liquid, which Jekyll runs over a post's body before Markdown, starts at these.
_LIQUID = re.compile(r"\{[{%]")
RAW, ENDRAW = "{% raw %}", "{% endraw %}"
# Inside {% raw %}, the brace of an endraw tag (which would end the block early) is
# spelt as an HTML character reference, which a browser shows the same.
_BRACE_REF = "&#123;"
_ENDRAW_BRACE = re.compile(r"\{(?=%-?\s*endraw\b)")
_ENDRAW_REF = re.compile(r"&#123;(?=%-?\s*endraw\b)")


def protect_liquid(text: str) -> str:
    """Text Jekyll will show as written: wrapped in {% raw %} when it holds a Liquid
    delimiter ({{ or {%), else unchanged (so the example's post stays byte for byte)."""
    if not _LIQUID.search(text):
        return text
    return RAW + _ENDRAW_BRACE.sub(_BRACE_REF, text) + ENDRAW


def unprotect_liquid(text: str) -> str:
    """Undo protect_liquid."""
    if not (text.startswith(RAW) and text.endswith(ENDRAW)):
        return text
    return _ENDRAW_REF.sub("{", text[len(RAW) : -len(ENDRAW)])


def render_post(post: PostData) -> str:
    """The text of a post file, in the example's exact shape (no final newline)."""
    front = [
        "---",
        f"layout: {post.layout if plain_ok(post.layout) else yaml_quoted(post.layout)}",
        f"title: {yaml_quoted(post.title)}",
        f"date: {post.date.strftime(DATE_FORMAT)}",
        f"categories: {yaml_words(post.categories)}",
        f"tags: {yaml_words(post.tags)}",
    ]
    if post.code:
        front.append(f"share_code: {yaml_quoted(post.code)}")
    front.append("---")
    body = [protect_liquid(post.html)]
    if post.link:
        body.append(protect_liquid(f"<{_autolink(post.link)}>"))
    if post.footer:
        body.append(post.footer)
    return "\n".join(front) + "\n" + "\n\n".join(body)


_LINK_BLOCK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^\s<>]+)>")
_FOOTER = re.compile(r"\[.*\]\(.*\)")


def _split_front(text: str) -> tuple[str, str]:
    text = text.removeprefix("\ufeff")
    if text.startswith("---\r\n"):
        text = text.replace("\r\n", "\n")
    if not text.startswith("---\n"):
        raise PostFormatError("no front matter (the file must start with ---)")
    end = text.find("\n---\n", 3)
    if end == -1:
        if text.endswith("\n---"):
            return text[4 : len(text) - 4], ""
        raise PostFormatError("the front matter is not closed with ---")
    return text[4:end], text[end + 5 :]


def _parse_date(value: Any, tz: str) -> datetime:
    """Dates as the example writes them, or as YAML read any other spelling."""
    if isinstance(value, str):
        for pattern in (DATE_FORMAT, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                value = datetime.strptime(value.strip(), pattern)
                break
            except ValueError:
                continue
        else:
            raise PostFormatError(f"cannot read the date {value!r}")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))
    if isinstance(value, date):
        return datetime.combine(value, time(), ZoneInfo(tz))
    raise PostFormatError(f"cannot read the date {value!r}")


def _words(value: Any) -> tuple[str, ...]:
    """Jekyll's reading: a string is split on spaces, a list is taken as it is."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if v is not None and str(v) != "")
    return tuple(str(value).split())


def read_post(text: str, *, timezone: str = "Asia/Shanghai") -> PostData:
    """Read a post back. ``timezone`` applies only to dates written without an offset."""
    front, body = _split_front(text)
    try:
        meta = yaml.safe_load(front) or {}
    except yaml.YAMLError as exc:
        raise PostFormatError(f"the front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise PostFormatError("the front matter is not a table of keys")
    if "date" not in meta:
        raise PostFormatError("the front matter has no date")
    body = body.rstrip()
    footer = link = ""
    head, _, last = body.rpartition("\n\n")
    if head and _FOOTER.fullmatch(last.strip()):
        footer, body = last.strip(), head
        head, _, last = body.rpartition("\n\n")
    match = _LINK_BLOCK.fullmatch(unprotect_liquid(last.strip()))
    if head and match:
        link, body = match.group(1), head
    body = unprotect_liquid(body)
    title = meta.get("title")
    return PostData(
        title="" if title is None else str(title),
        date=_parse_date(meta["date"], timezone),
        categories=_words(meta.get("categories", meta.get("category"))),
        tags=_words(meta.get("tags", meta.get("tag"))),
        html=body,
        link=link,
        footer=footer,
        layout=str(meta.get("layout") or ""),
        code=str(meta.get("share_code") or ""),
    )


# --- from a stored entry to a post, and back ----------------------------------------------


def attribution_paragraph(text: str) -> str:
    return ATTRIBUTION.format(html.escape(text, quote=False))


_EM_MEDIA = re.compile(r"""\bclass\s*=\s*["']?[^"'>]*\bem_media\b""")


def _last_paragraph_tag(fragment: str) -> str:
    """The opening tag of the <p> that ends the fragment, or "" when it ends otherwise."""
    tail = fragment.rstrip()
    if not tail.endswith("</p>"):
        return ""
    end = len(tail)
    while (start := tail.rfind("<p", 0, end)) != -1:
        after = tail[start + 2 : start + 3]
        if after == ">" or after.isspace():
            return tail[start : tail.find(">", start) + 1]
        end = start
    return ""


def has_attribution(fragment: str) -> bool:
    """Whether the article already ends with an attribution (em_media) paragraph."""
    return bool(_EM_MEDIA.search(_last_paragraph_tag(fragment)))


def with_attribution(fragment: str, text: str) -> str:
    if not text or has_attribution(fragment):
        return fragment
    return fragment + attribution_paragraph(text)


def without_attribution(fragment: str, text: str) -> str:
    """Undo with_attribution: drop the paragraph we would have added."""
    paragraph = attribution_paragraph(text)
    return fragment[: -len(paragraph)] if text and fragment.endswith(paragraph) else fragment


def post_slug(code: str) -> str:
    """A file-name slug from the share code alone, so a new title never makes a new post.

    Codes that are already safe are only lowercased (NW2021... -> nw2021...);
    others keep a readable part and gain a hash of the whole code.
    """
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", code):
        return code.lower()
    readable = re.sub(r"[^a-z0-9]+", "-", code.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha1(code.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}" if readable else digest


def post_filename(template: str, when: datetime, slug: str) -> str:
    return template.format(date=when.strftime("%Y-%m-%d"), slug=slug)


def filename_pattern(template: str) -> re.Pattern[str]:
    """Recognise the files a template names, capturing the slug."""
    parts = re.split(r"(\{date\}|\{slug\})", template)
    regex = {"{date}": r"\d{4}-\d{2}-\d{2}", "{slug}": r"(?P<slug>[a-z0-9-]+)"}
    return re.compile(
        "".join(regex.get(p, re.escape(p.replace("{{", "{").replace("}}", "}"))) for p in parts)
    )


def rules_for(config: Config, category_slugs: Iterable[str]) -> list[ShareCodeRule]:
    """Share-code rules to try on a post's link: its categories' sources first."""
    slugs = set(category_slugs)
    ordered = sorted(
        config.sources, key=lambda s: config.category_term(s.category).slug not in slugs
    )
    rules: list[ShareCodeRule] = []
    for source in ordered:
        if source.share_code.name != "none" and source.share_code not in rules:
            rules.append(source.share_code)
    return rules


def code_from_link(
    link: str, rules: Sequence[ShareCodeRule], title: str = "", when: datetime | None = None
) -> tuple[str, str]:
    """(share code, rule name) as a poll would find it for an entry with this link."""
    entry = EntryRecord(guid="", title=title, link=link, published=when)
    for rule in rules:
        code, rule_name = share_code(entry, rule)
        if rule_name == rule.name:
            return code, rule_name
    return share_code(entry, ShareCodeRule())


def _primary_first(names: Sequence[str], preferred: Sequence[str]) -> tuple[str, ...]:
    """The source's own names in its order, then the rest as stored."""
    first = [n for n in preferred if n in names]
    return tuple(first + [n for n in names if n not in first])


def attribution_for(source: Source | None, category_names: Sequence[str]) -> str:
    if source is not None:
        return source.attribution or source.name
    return category_names[0] if category_names else ""


def _md_text(text: str) -> str:
    return re.sub(r"([\\\[\]])", r"\\\1", text)


def footer_line(settings: PostsSettings, category: str, slug: str, tag: str) -> str:
    fields = {"site": settings.site_url, "tag": tag, "category": category, "category_slug": slug}
    links = [
        f"[{_md_text(text.format(**fields))}]({url.format(**fields)})"
        for text, url in (
            (settings.back_text, settings.back_url),
            (settings.home_text, settings.home_url),
        )
    ]
    return settings.separator.format().join(links)


def build_post(article: StoredArticle, config: Config) -> PostData:
    """The post for one stored entry (pure)."""
    source = config.source(article.source_id)
    zone = ZoneInfo(source.timezone if source else config.settings.timezone)
    category_names = _primary_first(article.entry_categories, [source.category] if source else [])
    tag_names = _primary_first(article.tags, source.tags if source else ())
    slugs = tuple(config.category_term(name).slug for name in category_names)
    category = category_names[0] if category_names else ""
    footer = footer_line(
        config.posts,
        category,
        slugs[0] if slugs else "",
        tag_names[0] if tag_names else category,
    )
    when = article.published.astimezone(zone).replace(microsecond=0)
    link = iri.link(article.link) or article.link  # what cannot be a URI: as it came
    derived, _ = code_from_link(link, rules_for(config, slugs), article.title, article.published)
    return PostData(
        title=strip_control(article.title),
        date=when,
        categories=slugs,
        tags=tag_names,
        html=with_attribution(
            article.content or article.summary, attribution_for(source, category_names)
        ),
        link=link,
        footer=footer,
        layout=config.posts.layout,
        # The code is written unless the share link gives it back, so every post imports
        # back to its article (one without a link always carries its code).
        code="" if article.link and derived == article.code else article.code,
    )


def post_path(config: Config, article: StoredArticle, post: PostData) -> Path:
    name = post_filename(config.posts.filename, post.date, post_slug(article.code))
    return config.posts.output_dir / name


def _category_name(config: Config, slug: str) -> str:
    for name, term in config.categories.items():
        if term.slug == slug:
            return name
    return slug


def article_from_post(post: PostData, config: Config) -> StoredArticle:
    """The entry a post stands for, as import stores it (pure).

    A post does not carry an entry's author, summary, enclosures or a separate
    updated time: those come back empty, and updated is the publication time.
    """
    published = post.date.astimezone(UTC)
    if post.code:
        code = post.code
    else:
        rules = rules_for(config, post.categories)
        code, _ = code_from_link(post.link, rules, post.title, published)
    names = tuple(dict.fromkeys(_category_name(config, slug) for slug in post.categories))
    candidates = [s for s in config.sources if s.category in names]
    source = next(
        (s for s in candidates if code_from_link(post.link, [s.share_code])[0] == code),
        candidates[0] if candidates else None,
    )
    content = without_attribution(
        post.html,
        attribution_for(source, _primary_first(names, [source.category] if source else [])),
    )
    return StoredArticle(
        code=code,
        title=post.title,
        link=post.link,
        published=published,
        updated=published,
        author="",
        summary="",
        content=clean_html(content, MAX_CONTENT),
        categories=(),
        enclosures=(),
        source_id=source.id if source else "",
        tags=tuple(dict.fromkeys(post.tags)),
        entry_categories=names,
    )


# --- files ---------------------------------------------------------------------------


@dataclass
class PostsReport:
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    unchanged: int = 0


class PostWriter:
    """Keeps the posts folder in step with the store: one file per entry."""

    def __init__(self, config: Config, store: Storage) -> None:
        self.config = config
        self.store = store

    def _code_of(self, path: Path) -> str | None:
        """The share code of a post file we wrote; None for anything else."""
        try:
            post = read_post(path.read_text(encoding="utf-8"), timezone=self.timezone)
        except (OSError, UnicodeDecodeError, PostFormatError):
            return None
        if post.code:
            return post.code
        if not post.link:
            return None
        rules = rules_for(self.config, post.categories)
        return code_from_link(post.link, rules, post.title, post.date.astimezone(UTC))[0]

    @property
    def timezone(self) -> str:
        return self.config.settings.timezone

    def _existing(self) -> dict[str, list[Path]]:
        folder = self.config.posts.output_dir
        pattern = filename_pattern(self.config.posts.filename)
        found: dict[str, list[Path]] = {}
        if not folder.is_dir():
            return found
        for path in sorted(folder.iterdir()):
            match = pattern.fullmatch(path.name)
            if match and path.is_file():
                found.setdefault(match.group("slug"), []).append(path)
        return found

    def _remove_if_ours(self, path: Path, slug: str, report: PostsReport) -> None:
        # Only a file whose share code gives this slug is ours: hand-written posts stay.
        code = self._code_of(path)
        if code is not None and post_slug(code) == slug:
            path.unlink(missing_ok=True)
            report.removed.append(path)

    def sync(self) -> PostsReport:
        """Write new and changed posts; leave unchanged files (and their mtimes) alone.
        Holds the output folder's lock, as a publish does (posts are published output
        too), and removes the temp files killed writers left among the posts."""
        with FolderLock(self.config.settings.output_dir):
            folder = self.config.posts.output_dir
            if folder.is_dir() and (removed := remove_temps(folder)):
                log.info("posts: removed %d temp file(s) left by a killed writer", removed)
            return self._sync()

    def _sync(self) -> PostsReport:
        report = PostsReport()
        existing = self._existing()
        owners: dict[str, str] = {}  # slug -> code, to catch codes that differ only in case
        # SQLite reads LIMIT -1 as "no limit": every entry gets its post.
        for article in self.store.articles(("all", ""), -1):
            slug = post_slug(article.code)
            if owners.setdefault(slug, article.code) != article.code:
                log.warning(
                    "posts: %r and %r share the slug %r; keeping the newer one's post",
                    owners[slug],
                    article.code,
                    slug,
                )
                continue
            post = build_post(article, self.config)
            path = post_path(self.config, article, post)
            if write_if_changed(path, render_post(post).encode("utf-8")):
                report.written.append(path)
            else:
                report.unchanged += 1
            for old in existing.pop(slug, []):
                if old != path:  # the date moved: the post moves with it
                    self._remove_if_ours(old, slug, report)
        if self.config.posts.remove_missing:
            for slug, paths in existing.items():
                for path in paths:
                    self._remove_if_ours(path, slug, report)
        if report.written or report.removed:
            log.info(
                "posts: %d written, %d removed, %d unchanged",
                len(report.written),
                len(report.removed),
                report.unchanged,
            )
        return report


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0  # already in the store
    failed: list[tuple[Path, str]] = field(default_factory=list)


def import_posts(folder: Path, config: Config, store: Storage, now: datetime) -> ImportReport:
    """Read every post in folder into the store, in one transaction.

    A file that cannot be read is reported and skipped; it stops nothing else.
    """
    report = ImportReport()
    articles: dict[str, StoredArticle] = {}
    paths = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in sorted(paths):
        try:
            post = read_post(path.read_text(encoding="utf-8"), timezone=config.settings.timezone)
        except (OSError, UnicodeDecodeError, PostFormatError) as exc:
            report.failed.append((path, str(exc)))
            continue
        if not post.link and not post.code:
            report.failed.append((path, "no share link and no share_code"))
            continue
        article = article_from_post(post, config)
        if article.code in articles:
            report.skipped += 1  # a second file for the same article
            continue
        articles[article.code] = article
    imported, skipped = store.import_articles(articles.values(), now, IMPORT_RULE)
    report.imported, report.skipped = imported, report.skipped + skipped
    return report


def describe_posts(report: PostsReport, config: Config) -> str:
    return (
        f"posts: {len(report.written)} written, {len(report.removed)} removed, "
        f"{report.unchanged} unchanged in {config.posts.output_dir}"
    )
