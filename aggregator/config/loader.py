"""Load and validate ``config/sources.toml`` into typed, immutable objects.

Every problem found is reported at once, each with the file, the line, the
key and (for sources) the source id. Loading never has side effects.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli

from aggregator import PROJECT_URL, __version__
from aggregator.config.selectors import Selectors, check_selectors, html_expression
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.config.slugs import KnownSlugs, assign_slugs
from aggregator.errors import ConfigError, ConfigNotFound, ConfigProblem
from aggregator.urls import normalize_url

DEFAULT_CONFIG_PATH = Path("config/sources.toml")
DEFAULT_DATABASE = Path("data/aggregator.db")  # relative to the project folder
DEFAULT_OUTPUT_DIR = Path("feeds")
DEFAULT_USER_AGENT = f"aggregator/{__version__} (+{PROJECT_URL})"
_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
# What slugify makes (of any length): all a kept slug may be, as it names files.
MADE_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")

log = logging.getLogger("aggregator.config")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MIB = 1024 * 1024


@dataclass(frozen=True)
class EntryFilter:
    """Regexes (Python syntax, searched anywhere) on an entry's title and content.

    An entry is kept when it matches no exclude pattern and, if any include
    pattern is given, at least one include pattern.
    """

    include_title: tuple[str, ...] = ()
    exclude_title: tuple[str, ...] = ()
    include_content: tuple[str, ...] = ()
    exclude_content: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any(
            (self.include_title, self.exclude_title, self.include_content, self.exclude_content)
        )


@dataclass(frozen=True)
class Rule:
    """When an entry matches every match_* given, it gets add_categories and add_tags.

    match_category: any of the entry's own <category> values (compared without case).
    match_title: a regex searched in the entry's title.
    sources: the ids of the sources the rule is limited to (empty: every source).
    """

    add_categories: tuple[str, ...] = ()
    add_tags: tuple[str, ...] = ()
    match_category: tuple[str, ...] = ()
    match_title: str | None = None
    sources: tuple[str, ...] = ()
    index: int = 0  # position in the config file, to name the rule in reports

    @property
    def name(self) -> str:
        return f"rules[{self.index}]"


# How a source is read (see aggregator.parse.kinds, which registers a reader for each):
# "feed" is RSS, Atom, RDF or JSON Feed, told apart by the bytes; "html" a list page read
# with selectors; "json" a JSON API read with paths.
SOURCE_KINDS = ("feed", "html", "json")
METHODS = ("GET", "POST")


@dataclass(frozen=True)
class FullText:
    """Whether to fetch each new or changed entry's article page and keep its main text:
    found by an extractor (`full_text = true`) or by a selector (`{ selector = "..." }`)."""

    enabled: bool = False
    selector: str = ""  # an HTML selector (see config.selectors); "" = automatic


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    url: str
    category: str
    tags: tuple[str, ...] = ()
    interval: float = 1800.0
    enabled: bool = True
    share_code: ShareCodeRule = ShareCodeRule()  # noqa: RUF009 (frozen: immutable)
    timezone: str = "Asia/Shanghai"
    headers: tuple[tuple[str, str], ...] = ()
    allow_private: bool = False
    attribution: str | None = None
    filters: EntryFilter = field(default_factory=EntryFilter)
    rules: tuple[Rule, ...] = ()  # the [[rules]] that apply to this source
    retain_for: float | None = None  # overrides settings.retain_for for this source
    retain_entries: int | None = None  # overrides settings.retain_entries
    kind: str = "feed"  # one of SOURCE_KINDS
    select: Selectors = field(default_factory=Selectors)  # kind "html" or "json": where
    method: str = "GET"
    params: tuple[tuple[str, str], ...] = ()  # query parameters added to the URL
    body: str = ""  # sent with a POST
    full_text: FullText = FullText()


@dataclass(frozen=True)
class Term:
    """A category or tag: its display name, its slug, an optional description."""

    name: str
    slug: str
    description: str = ""


@dataclass(frozen=True)
class PostsSettings:
    """[publish.posts]: write each entry as a static-site (Jekyll) post.

    The link templates take {site}, {tag}, {category} and {category_slug};
    the file name takes {date} (the local publication date) and {slug}.
    """

    enabled: bool = False
    output_dir: Path = Path("site/_posts")
    site_url: str = ""  # "//host", "https://host/path" or "" for root-relative links
    layout: str = "post"
    filename: str = "{date}-{slug}.md"
    back_text: str = "返回{tag}"
    back_url: str = "{site}/category/{category_slug}.html"
    home_text: str = "返回首页"
    home_url: str = "{site}/"
    separator: str = "｜"
    remove_missing: bool = False  # delete the post of an entry no longer in the store


@dataclass(frozen=True)
class Config:
    path: Path
    settings: Settings
    sources: tuple[Source, ...]
    categories: Mapping[str, Term] = field(default_factory=dict)  # by name
    tags: Mapping[str, Term] = field(default_factory=dict)  # by name
    posts: PostsSettings = PostsSettings()
    rules: tuple[Rule, ...] = ()

    def source(self, source_id: str) -> Source | None:
        return self._sources_by_id.get(source_id)

    @functools.cached_property
    def _sources_by_id(self) -> dict[str, Source]:
        """Sources by id, made once: publishing asks for each feed's source, and a scan
        per question made listing 50,000 sources' feeds quadratic."""
        return {source.id: source for source in self.sources}

    @property
    def enabled_sources(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.enabled)

    def category_term(self, name: str) -> Term:
        return self.categories.get(name) or Term(name, assign_slugs([name])[name])

    def tag_term(self, name: str) -> Term:
        return self.tags.get(name) or Term(name, assign_slugs([name])[name])


# --- locating keys in the file ---------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def locate_keys(text: str) -> dict[tuple[str | int, ...], int]:
    """Map key paths such as ("sources", 2, "url") to their 1-based line numbers.

    A deliberately small scanner: TOML's own parser does not report positions,
    and one-line keys under plain and array-of-tables headers cover real files.
    """
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[str, int] = {}
    prefix: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2).replace('"', "").replace("'", "")
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                prefix = (name, index)
            else:
                prefix = tuple(name.split("."))
            lines.setdefault(prefix, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*prefix, key.group(1).strip('"')), number)
    return lines


class _Problems:
    """Collects problems while validating, each located in the file."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.items: list[ConfigProblem] = []

    @functools.cached_property
    def lines(self) -> dict[tuple[str | int, ...], int]:
        """Located on the first problem: a valid file never needs its lines."""
        return locate_keys(self.text)

    def add(self, where: tuple[str | int, ...], message: str, source_id: str | None = None) -> None:
        line = None
        for depth in range(len(where), 0, -1):
            line = self.lines.get(where[:depth])
            if line:
                break
        key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in where)
        key = key.replace(".[", "[")
        self.items.append(ConfigProblem(str(self.path), line, key, message, source_id))


# --- value checkers: each returns the converted value or raises ValueError ----------


def parse_duration(value: Any) -> float:
    """Seconds from an int/float or a string like "90s", "30m", "2h", "1d"."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as 1800 or "30m"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f'expected a duration such as 1800 or "30m", got {value!r}')
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number, 0 or more, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _port(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    port = _int(value)
    if port > 65535:
        raise ValueError(f"expected a port number up to 65535, got {value!r}")
    return port


def _http_url(value: Any) -> str:
    url = _string(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an absolute http(s) URL, got {value!r}")
    return url


def _timezone(value: Any) -> str:
    name = _string(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


def _networks(value: Any) -> tuple[str, ...]:
    """IP addresses or networks ("192.0.2.7", "10.0.0.0/8", "2001:db8::/32")."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of addresses or networks, got {value!r}")
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise ValueError(
                f'expected an IP address or network such as "10.0.0.0/8", got {item!r}'
            ) from None
    return tuple(dict.fromkeys(networks))


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise ValueError(f"expected a list of tag names, got {value!r}")
    return tuple(dict.fromkeys(t.strip() for t in value))


def _regex(pattern: Any) -> str:
    text = _string(pattern)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {text!r}: {exc}") from None
    return text


def _regexes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a regex or a list of regexes, got {value!r}")
    return tuple(_regex(v) for v in value)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a name or a list of names, got {value!r}")
    return tuple(dict.fromkeys(_string(v).strip() for v in value))


def _words(value: Any) -> tuple[str, ...]:
    """A non-empty list of lowercase words, in the order given, each once. (Which words
    mean something is for the part that reads the setting to say.)"""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f'expected a list of names, e.g. ["atom", "json", "rss"], got {value!r}')
    words = tuple(dict.fromkeys(_string(v).strip().lower() for v in value))
    if not all(re.fullmatch(r"[a-z0-9_-]+", word) for word in words):
        raise ValueError(f"expected names of lowercase letters and digits, got {value!r}")
    return words


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a table of header names to string values")
    return tuple(sorted(value.items()))


def _kind(value: Any) -> str:
    if value not in SOURCE_KINDS:
        raise ValueError(f"expected one of {', '.join(SOURCE_KINDS)}, got {value!r}")
    return str(value)


def _method(value: Any) -> str:
    method = _string(value).upper()
    if method not in METHODS:
        raise ValueError(f"expected {' or '.join(METHODS)}, got {value!r}")
    return method


def _params(value: Any) -> tuple[tuple[str, str], ...]:
    """Query parameters: a table of names to strings or numbers."""
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError('expected a table of names to values, e.g. { page = 1, size = "20" }')
    return tuple((str(k), str(v)) for k, v in value.items())


def _full_text(value: Any) -> FullText:
    if isinstance(value, bool):
        return FullText(enabled=value)
    if isinstance(value, dict) and set(value) == {"selector"}:
        selector = _string(value["selector"])
        html_expression(selector)
        return FullText(enabled=True, selector=selector.strip())
    raise ValueError('expected true, false or { selector = "div.article" }')


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a table")
    return value


Checker = Callable[[Any], Any]


def _setting(
    default: Any,
    check: Checker,
    *,
    restart: bool = False,
    env: bool = False,
    limit: tuple[str, str] | None = None,
) -> Any:
    """One [settings] key, declared once: its default, the checker of a written value,
    whether a running daemon needs a restart to apply a change of it, whether the
    environment may override it (AGGREGATOR_<KEY>), and the limit it sets, as (group,
    name): the field `name` of that group's limits (see limits_of)."""
    metadata = {"check": check, "restart": restart, "env": env, "limit": limit}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """The [settings] table. Every field is a key of the file (SETTINGS_KEYS), documented
    in the README's table; RESTART_SETTINGS are bound when the daemon starts; the
    environment overrides those in ENV_OVERRIDES; limits_of gives a group's limits."""

    # (_setting returns a field(); ruff cannot see that, nor that a Path is immutable)
    # An SQLite file, or a database URL (postgresql://...: a cluster, docs/scaling.md)
    database: Path | str = _setting(  # noqa: RUF009
        DEFAULT_DATABASE, _string, restart=True, env=True
    )
    output_dir: Path = _setting(DEFAULT_OUTPUT_DIR, _string, restart=True, env=True)  # noqa: RUF009
    base_url: str = _setting("", _http_url, env=True)  # "" in the file: http://<host>:<port>
    host: str = _setting("127.0.0.1", _string, restart=True, env=True)
    port: int = _setting(8080, _port, restart=True, env=True)
    default_interval: float = _setting(1800.0, parse_duration)
    feed_entries: int = _setting(50, _int)
    user_agent: str = _setting(DEFAULT_USER_AGENT, _string, restart=True)
    timezone: str = _setting("Asia/Shanghai", _timezone)
    language: str = _setting("zh-CN", _string)
    title: str = _setting("aggregator", _string)
    author: str = _setting("aggregator", _string)
    # Fetches in flight (the daemon's poll threads): polling is mostly waiting for servers;
    # per_host_limit keeps it polite.
    workers: int = _setting(128, _int, restart=True)
    connect_timeout: float = _setting(10.0, parse_duration, limit=("fetch", "connect_timeout"))
    read_timeout: float = _setting(30.0, parse_duration, limit=("fetch", "read_timeout"))
    fetch_deadline: float = _setting(60.0, parse_duration, limit=("fetch", "deadline"))
    max_body_bytes: int = _setting(20 * MIB, _int, limit=("fetch", "max_body_bytes"))
    max_decompressed_bytes: int = _setting(
        50 * MIB, _int, limit=("fetch", "max_decompressed_bytes")
    )
    # The bodies all fetches in flight may hold together (a poll's processes share it out).
    max_bytes_in_flight: int = _setting(128 * MIB, _int, limit=("fetch", "bytes_in_flight"))
    max_redirects: int = _setting(5, _int, limit=("fetch", "max_redirects"))
    publish_delay: float = _setting(2.0, _float)
    archive_entries: int = _setting(50, _int)  # per RFC 5005 archive page; fixed once pages exist
    hub: str = _setting("", _http_url)  # WebSub hub URL; empty means no hub links and no pings
    stop_timeout: float = _setting(30.0, parse_duration)  # a stopping daemon waits for polls
    retain_for: float | None = _setting(None, parse_duration)  # None: keep every entry
    retain_entries: int | None = _setting(None, _int)  # per source; None: all
    per_host_limit: int = _setting(4, _int, restart=True, limit=("fetch", "per_host"))
    parse_timeout: float = _setting(60.0, parse_duration, limit=("parse", "timeout"))
    parse_memory_limit: int = _setting(512 * MIB, _int, limit=("parse", "memory"))
    parse_inline_max_bytes: int = _setting(128 * 1024, _count, limit=("parse", "inline_max_bytes"))
    max_entries: int = _setting(2000, _int, limit=("fields", "entries"))
    max_title_length: int = _setting(1000, _int, limit=("fields", "title"))
    max_summary_length: int = _setting(100_000, _int, limit=("fields", "summary"))
    max_content_length: int = _setting(1_000_000, _int, limit=("fields", "content"))
    status_page: bool = _setting(True, _bool)  # serve /status and /status.json
    status_allow: tuple[str, ...] = _setting((), _networks)  # who else may see them
    # Output formats published (aggregator.publish.formats); the first is feeds.opml's.
    formats: tuple[str, ...] = _setting(("atom", "json", "rss"), _words)


SETTINGS_KEYS: dict[str, Checker] = {f.name: f.metadata["check"] for f in fields(Settings)}
RESTART_SETTINGS = tuple(f.name for f in fields(Settings) if f.metadata["restart"])
# Environment variables that override [settings] keys, so one file serves
# development and production.
ENV_OVERRIDES = {
    f"AGGREGATOR_{f.name.upper()}": f.name for f in fields(Settings) if f.metadata["env"]
}


def limits_of(settings: Settings, group: str) -> dict[str, Any]:
    """The settings that set a group's limits ("fetch": fetch.Limits, "parse":
    parse.ParseLimits, "fields": parse.FieldLimits), under the names its fields have."""
    return {
        f.metadata["limit"][1]: getattr(settings, f.name)
        for f in fields(Settings)
        if f.metadata["limit"] and f.metadata["limit"][0] == group
    }


def default_base_url(host: str, port: int) -> str:
    """base_url when the file gives none: the built-in server's own address (a wildcard
    host, which is no address to link to, as loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


SOURCE_KEYS: dict[str, Checker] = {
    "id": _string,
    "name": _string,
    "url": _string,
    "category": _string,
    "category_slug": _string,
    "tags": _tags,
    "interval": parse_duration,
    "enabled": _bool,
    "share_code": ShareCodeRule.from_config,
    "timezone": _timezone,
    "headers": _headers,
    "allow_private": _bool,
    "attribution": _string,
    "include_title": _regexes,
    "exclude_title": _regexes,
    "include_content": _regexes,
    "exclude_content": _regexes,
    "retain_for": parse_duration,
    "retain_entries": _int,
    "kind": _kind,
    "select": _table,  # checked against the kind in _source
    "method": _method,
    "params": _params,
    "body": str,
    "full_text": _full_text,
}
FILTER_KEYS = ("include_title", "exclude_title", "include_content", "exclude_content")
REQUIRED_SOURCE_KEYS = ("id", "name", "url", "category")
TERM_KEYS: dict[str, Checker] = {"name": _string, "slug": _string, "description": str}
RULE_KEYS: dict[str, Checker] = {
    "match_category": _names,
    "match_title": _regex,
    "sources": _names,
    "add_categories": _names,
    "add_tags": _names,
}
TOP_LEVEL_KEYS = {"settings", "sources", "categories", "tags", "rules", "publish"}

_LINK_FIELDS = {"site": "", "tag": "", "category": "", "category_slug": ""}


def _template(fields: Mapping[str, str]) -> Checker:
    """A str.format template that may use only the given placeholders."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        try:
            value.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            known = ", ".join("{" + name + "}" for name in fields)
            raise ValueError(f"bad template {value!r} ({exc}); placeholders: {known}") from None
        return value

    return check


def _site_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    relative = url == "" or (url.startswith("/") and not url.startswith("//"))
    absolute = parts.scheme in ("http", "https", "") and bool(parts.netloc)
    if not (relative or absolute) or re.search(r"[\s()<>]", url):
        raise ValueError(f'expected "https://host", "//host" or a path like "/blog", got {value!r}')
    return url


def _post_filename(value: Any) -> str:
    name: str = _template({"date": "2021-12-24", "slug": "x"})(value)
    if name.count("{slug}") != 1 or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError('expected a file name with {slug} once, e.g. "{date}-{slug}.md"')
    return name


POSTS_KEYS: dict[str, Checker] = {
    "enabled": _bool,
    "output_dir": _string,
    "site_url": _site_url,
    "layout": _string,
    "filename": _post_filename,
    "back_text": _template(_LINK_FIELDS),
    "back_url": _template(_LINK_FIELDS),
    "home_text": _template(_LINK_FIELDS),
    "home_url": _template(_LINK_FIELDS),
    "separator": _template({}),
    "remove_missing": _bool,
}
PUBLISH_KEYS: dict[str, Checker] = {"posts": lambda value: value}


def _check_table(
    table: Any,
    checkers: Mapping[str, Checker],
    where: tuple[str | int, ...],
    problems: _Problems,
    source_id: str | None = None,
) -> dict[str, Any]:
    """Run each key through its checker; unknown keys and bad values become problems."""
    if not isinstance(table, dict):
        problems.add(where, "expected a table", source_id)
        return {}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        checker = checkers.get(key)
        if checker is None:
            known = ", ".join(sorted(checkers))
            problems.add((*where, key), f"unknown key (known keys: {known})", source_id)
            continue
        try:
            values[key] = checker(raw)
        except ValueError as exc:
            problems.add((*where, key), str(exc), source_id)
    return values


def database_exists(database: Path | str) -> bool:
    """Whether there is a store to read: a database URL is taken to have one."""
    return not isinstance(database, Path) or database.exists()


def _resolve_database(base: Path, value: str) -> Path | str:
    """A database URL (scheme://...) as written; a file path resolved like the others."""
    return value if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value) else _resolve_path(base, value)


def _resolve_path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _resolve_source_url(url: str, base: Path) -> str:
    """file: URLs may be relative to the project; make them absolute."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return url
    path = parts.path if not parts.netloc else "/" + parts.netloc + parts.path
    return (Path(path) if Path(path).is_absolute() else base / path).resolve().as_uri()


def feed_url_key(url: str) -> str:
    """What two source URLs share when they are the same feed: they differ at most in the
    case of scheme and host, a default port, tracking parameters or a final slash."""

    return normalize_url(url.rstrip("/"))


def _check_source_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"expected an absolute URL with a host, got {url!r}")
        return
    if parts.scheme != "file":
        raise ValueError(f"expected an http, https or file URL, got {url!r}")


def _project_root(config_path: Path) -> Path:
    """Relative paths in the config are relative to the folder holding config/."""
    folder = config_path.resolve().parent
    return folder.parent if folder.name == "config" else folder


def _settings(raw: Any, root: Path, env: Mapping[str, str], problems: _Problems) -> Settings:
    table = dict(raw) if isinstance(raw, dict) else {}
    for variable, key in ENV_OVERRIDES.items():
        if variable in env:
            try:
                SETTINGS_KEYS[key](env[variable])
            except ValueError as exc:
                problems.add(("settings", key), f"{exc} (from the environment: {variable})")
                table.pop(key, None)
                continue
            table[key] = env[variable]
    values = _check_table(table, SETTINGS_KEYS, ("settings",), problems)
    settings = Settings(**values)
    return replace(
        settings,
        database=_resolve_database(root, str(settings.database)),
        output_dir=_resolve_path(root, str(settings.output_dir)),
        base_url=settings.base_url or default_base_url(settings.host, settings.port),
    )


def _posts(raw: Any, root: Path, problems: _Problems) -> PostsSettings:
    """[publish.posts]; writing a table switches posts on unless it says enabled = false."""
    publish = _check_table(raw, PUBLISH_KEYS, ("publish",), problems)
    if "posts" not in publish:
        return PostsSettings()
    values = _check_table(publish["posts"], POSTS_KEYS, ("publish", "posts"), problems)
    values.setdefault("enabled", True)
    values["output_dir"] = _resolve_path(root, values.get("output_dir", "site/_posts"))
    return PostsSettings(**values)


def _terms(raw: Any, kind: str, problems: _Problems) -> dict[str, Term]:
    terms: dict[str, Term] = {}
    if raw is None:
        return terms
    if not isinstance(raw, list):
        problems.add((kind,), f"expected [[{kind}]] tables")
        return terms
    for index, table in enumerate(raw):
        values = _check_table(table, TERM_KEYS, (kind, index), problems)
        if "name" not in values:
            problems.add((kind, index), "missing required key 'name'")
            continue
        slug = values.get("slug")
        if slug is not None and not _SLUG.match(slug):
            problems.add((kind, index, "slug"), "a slug is lowercase ASCII letters, digits and -")
            continue
        terms[values["name"]] = Term(values["name"], slug or "", values.get("description", ""))
    return terms


def _source(
    table: Any, index: int, settings: Settings, root: Path, problems: _Problems
) -> tuple[Source, str | None] | None:
    source_id = table.get("id") if isinstance(table, dict) else None
    sid = source_id if isinstance(source_id, str) else None
    values = _check_table(table, SOURCE_KEYS, ("sources", index), problems, sid)
    missing = [k for k in REQUIRED_SOURCE_KEYS if k not in values and k not in (table or {})]
    for key in missing:
        problems.add(("sources", index), f"missing required key {key!r}", sid)
    bad = False  # keep checking, so every problem of the source is reported at once
    if "id" in values and not _SOURCE_ID.match(values["id"]):
        problems.add(
            ("sources", index, "id"), "an id is lowercase letters, digits, - and _ (max 64)", sid
        )
        bad = True
    if "url" in values:
        try:
            _check_source_url(values["url"])
            values["url"] = _resolve_source_url(values["url"], root)
        except ValueError as exc:
            problems.add(("sources", index, "url"), str(exc), sid)
            bad = True
    bad = not _check_kind(values, index, problems, sid) or bad
    if bad or missing or len(values) < len(REQUIRED_SOURCE_KEYS):
        return None
    values.setdefault("interval", settings.default_interval)
    values.setdefault("timezone", settings.timezone)
    category_slug = values.pop("category_slug", None)
    values["filters"] = EntryFilter(**{k: values.pop(k) for k in FILTER_KEYS if k in values})
    try:
        return Source(**values), category_slug
    except TypeError:  # a required key had a bad value; already reported
        return None


def _check_kind(values: dict[str, Any], index: int, problems: _Problems, sid: str | None) -> bool:
    """An html or json source needs a `select` table fit for its kind; a feed has none.
    Converts values["select"] in place; False when a problem was reported."""
    kind = values.get("kind", "feed")
    if "select" not in values:
        if kind == "feed":
            return True
        problems.add(("sources", index), f'a kind = "{kind}" source needs a select table', sid)
        return False
    if kind == "feed":
        problems.add(
            ("sources", index, "select"), 'select is for kind = "html" or kind = "json"', sid
        )
        return False
    try:
        values["select"] = check_selectors(values["select"], kind)
    except ValueError as exc:
        problems.add(("sources", index, "select"), str(exc), sid)
        return False
    return True


def _rules(raw: Any, source_ids: set[str], problems: _Problems) -> tuple[Rule, ...]:
    """[[rules]]: each needs something to match and something to add."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(("rules",), "expected [[rules]] tables")
        return ()
    rules = []
    for index, table in enumerate(raw):
        values = _check_table(table, RULE_KEYS, ("rules", index), problems)
        raw_keys = set(table) if isinstance(table, dict) else set()
        if not raw_keys & {"match_category", "match_title"}:
            problems.add(("rules", index), "a rule needs match_category or match_title")
        if not raw_keys & {"add_categories", "add_tags"}:
            problems.add(("rules", index), "a rule needs add_categories or add_tags")
        unknown = [s for s in values.get("sources", ()) if s not in source_ids]
        if unknown:
            problems.add(("rules", index, "sources"), f"no such source: {', '.join(unknown)}")
        if len(values) == len(raw_keys) and not unknown:
            rules.append(Rule(index=index, **values))
    return tuple(rules)


def _taxonomy(
    sources: list[tuple[Source, str | None]],
    categories: dict[str, Term],
    tags: dict[str, Term],
    problems: _Problems,
    rules: tuple[Rule, ...] = (),
    known: KnownSlugs | None = None,
) -> tuple[dict[str, Term], dict[str, Term]]:
    """Give every category and tag name a slug: pinned ones first, then derived."""
    pinned_categories = {name: t.slug for name, t in categories.items() if t.slug}
    for index, (source, slug) in enumerate(sources):
        if slug is None:
            continue
        if not _SLUG.match(slug):
            problems.add(
                ("sources", index, "category_slug"),
                "a slug is lowercase ASCII letters, digits and -",
                source.id,
            )
            continue
        existing = pinned_categories.setdefault(source.category, slug)
        if existing != slug:
            problems.add(
                ("sources", index, "category_slug"),
                f"category {source.category!r} already has slug {existing!r}",
                source.id,
            )
    category_names = set(categories) | {s.category for s, _ in sources}
    category_names |= {c for r in rules for c in r.add_categories}
    tag_names = set(tags) | {t for s, _ in sources for t in s.tags}
    tag_names |= {t for r in rules for t in r.add_tags}
    category_slugs = assign_slugs(category_names, pinned_categories, known)
    pinned_tags = {n: t.slug for n, t in tags.items() if t.slug}
    tag_slugs = assign_slugs(tag_names, pinned_tags, known)
    for kind, slugs in (("categories", category_slugs), ("tags", tag_slugs)):
        seen: dict[str, str] = {}
        for name, slug in sorted(slugs.items()):
            if slug in seen:
                problems.add((kind,), f"slug {slug!r} is used by both {seen[slug]!r} and {name!r}")
            seen[slug] = name

    def term(name: str, slug: str, defined: dict[str, Term]) -> Term:
        description = defined[name].description if name in defined else ""
        return Term(name, slug, description)

    return (
        {n: term(n, s, categories) for n, s in category_slugs.items()},
        {n: term(n, s, tags) for n, s in tag_slugs.items()},
    )


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """The file's data; a syntax error raises ConfigError naming the file and the line.
    A byte-order mark (some Windows editors write one) is not part of the text."""
    try:
        return tomli.loads(text.removeprefix("\ufeff"))
    except tomli.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError([ConfigProblem(str(path), line, "(syntax)", str(exc))]) from None


def parse_config(
    text: str,
    path: Path,
    env: Mapping[str, str] | None = None,
    known_slugs: Callable[[Path | str], KnownSlugs | None] | None = None,
) -> Config:
    """Validate the text of a config file. Raises ConfigError with every problem.
    known_slugs gives the slugs worked out before for the configured database."""
    env = os.environ if env is None else env
    text = text.removeprefix("\ufeff")
    problems = _Problems(path, text)
    data = parse_toml(text, path)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(
                (key,), f"unknown top-level key (known: {', '.join(sorted(TOP_LEVEL_KEYS))})"
            )
    root = _project_root(path)
    settings = _settings(data.get("settings", {}), root, env, problems)
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list):
        problems.add(("sources",), "expected [[sources]] tables")
        raw_sources = []
    sources: list[tuple[Source, str | None]] = []
    seen_ids: dict[str, int] = {}
    seen_urls: dict[str, str] = {}
    for index, table in enumerate(raw_sources):
        checked = _source(table, index, settings, root, problems)
        if checked is None:
            continue
        source = checked[0]
        if source.id in seen_ids:
            problems.add(
                ("sources", index, "id"),
                f"duplicate id, already used by source number {seen_ids[source.id] + 1}",
                source.id,
            )
            continue
        seen_ids[source.id] = index
        url_key = feed_url_key(source.url)
        if url_key in seen_urls:
            problems.add(
                ("sources", index, "url"),
                f"duplicate url, already used by source {seen_urls[url_key]!r}",
                source.id,
            )
            continue
        seen_urls[url_key] = source.id
        sources.append(checked)
    categories = _terms(data.get("categories"), "categories", problems)
    tags = _terms(data.get("tags"), "tags", problems)
    rules = _rules(data.get("rules"), set(seen_ids), problems)
    known = known_slugs(settings.database) if known_slugs else None
    category_terms, tag_terms = _taxonomy(sources, categories, tags, problems, rules, known)
    posts = _posts(data.get("publish", {}), root, problems)
    if problems.items:
        raise ConfigError(problems.items)
    bound = tuple(_with_rules(source, rules) for source, _ in sources)
    return Config(path, settings, bound, category_terms, tag_terms, posts=posts, rules=rules)


def _with_rules(source: Source, rules: Sequence[Rule]) -> Source:
    """The source with the rules that apply to it (a copy only when some do)."""
    applying = tuple(r for r in rules if not r.sources or source.id in r.sources)
    return replace(source, rules=applying) if applying else source


def load_config(
    path: Path | str = DEFAULT_CONFIG_PATH,
    env: Mapping[str, str] | None = None,
    slug_shelf_at: Callable[[str], SlugShelf | None] | None = None,
) -> Config:
    """The config file at `path`, checked. The slugs worked out for names without a
    pinned one are kept beside an SQLite database; for a database URL, on the shelf
    slug_shelf_at gives (aggregator.store.slug_shelf: in the database itself), or
    nowhere without one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        relative_to = None if path.is_absolute() else str(Path.cwd())
        raise ConfigNotFound(str(path), str(path.absolute()), relative_to) from None
    except IsADirectoryError:
        problem = ConfigProblem(str(path), None, "(file)", "a folder, not a config file")
        raise ConfigError([problem]) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, "(file)", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "(file)", f"not UTF-8: {exc}")]) from None
    opened: list[tuple[SlugShelf, KnownSlugs]] = []

    def known_slugs(database: Path | str) -> KnownSlugs | None:
        if isinstance(database, Path):
            shelf: SlugShelf | None = SlugFile(slugs_file(database))
        else:  # a database URL: only its backend knows where to keep them
            shelf = slug_shelf_at(database) if slug_shelf_at else None
        if shelf is None:
            return None
        opened.append((shelf, shelf.read()))
        return opened[-1][1]

    config = parse_config(text, path, env, known_slugs)
    for shelf, known in opened:
        if known.added:
            shelf.keep(known)
    return config


class SlugShelf(Protocol):
    """Where the slugs worked out for names without a pinned one are kept between
    commands (KnownSlugs). Failing to read or keep them only costs working them out
    again (the same slugs, with the same jieba): it is never an error."""

    def read(self) -> KnownSlugs: ...

    def keep(self, known: KnownSlugs) -> None: ...


@dataclass(frozen=True)
class SlugFile:
    """A SlugShelf in a JSON file (beside an SQLite database)."""

    file: Path

    def read(self) -> KnownSlugs:
        return read_known_slugs(self.file)

    def keep(self, known: KnownSlugs) -> None:
        keep_known_slugs(self.file, known)


def made_slugs(data: Mapping[Any, Any]) -> dict[str, str]:
    """The name -> slug pairs of a shelf whose slugs are ones this program makes (a
    slug that could leave its folder, say, is left out: worked out again)."""
    return {k: v for k, v in data.items() if isinstance(v, str) and MADE_SLUG.fullmatch(v)}


def slugs_file(database: Path) -> Path:
    """Where the slugs worked out for names without a pinned one are kept: beside the
    database, which is writable wherever the service runs."""
    return database.with_name(database.name + ".slugs.json")


def read_known_slugs(file: Path) -> KnownSlugs:
    """The slugs kept in `file`; none when it is missing or unreadable (they are worked
    out again: the same ones, with the same jieba)."""
    try:
        data = json.loads(file.read_bytes())
    except (OSError, ValueError):
        return KnownSlugs()
    if not isinstance(data, dict):
        return KnownSlugs()
    return KnownSlugs(made_slugs(data))


def keep_known_slugs(file: Path, known: KnownSlugs) -> None:
    """Write the slugs down for the next command (atomically); a folder we may not
    write to only means working them out again next time."""
    from aggregator.files import write_if_changed  # tempfile and threads: only to write

    data = json.dumps(known.known, ensure_ascii=False, sort_keys=True, indent=0)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_if_changed(file, data.encode("utf-8"), sync_dir=False)
    except OSError as exc:
        log.debug("could not keep the slugs in %s: %s", file, exc)
