"""Fetch and read a source without storing anything: what `aggregator sources add` finds
at a URL (the feed, or the one an HTML page announces, or what selectors find on a
page, and the [[sources]] table to add), what `aggregator sources check` shows of a
configured source's entries (for a page or an API, what each selector or path picked),
and what `aggregator config check --fetch` finds missing.

Each returns a plain report for the command line to print; the config file is
edited by the caller (aggregator.config.sourcefile).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aggregator.config.loader import Config, Source
from aggregator.config.selectors import check_selectors
from aggregator.config.sharecodes import ShareCodeRule
from aggregator.config.sourcefile import propose_id
from aggregator.errors import FetchError, ParseError
from aggregator.fetch.discover import feed_links, looks_like_html, suggest_share_param
from aggregator.fetch.fetcher import Fetcher
from aggregator.identity.identify import Scope, identify
from aggregator.identity.rules import classify, matching_rules, rejection
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.parse.kinds import picked_values, unmatched_fields
from aggregator.parse.limits import ParseLimits
from aggregator.parse.sanitize import plain_text, shown_title
from aggregator.run.fulltext import ArticleCache, FullText
from aggregator.run.poll import extract, fetch_request, source_request
from aggregator.store import carriers_of

MAX_DISCOVERED = 3  # feed links of an HTML page tried in turn


# --- a new source ------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    url: str  # the feed's own URL (after autodiscovery and permanent redirects)
    feed: ParsedFeed
    discovered_from: str | None = None  # the HTML page, when autodiscovery was used


def find_feed(fetcher: Fetcher, url: str, probe: Source, now: datetime) -> Found:
    """Fetch the URL; if it is an HTML page, follow its <link rel="alternate"> feeds."""
    fetched = fetcher.fetch(url, headers=probe.headers, allow_private=probe.allow_private, now=now)
    body = fetched.body or b""
    final = fetched.moved_to or url
    try:
        return Found(final, extract(probe, body, fetched.url, fetched.content_type, now))
    except ParseError as exc:
        if not looks_like_html(body, fetched.content_type):
            raise
        links = feed_links(body, fetched.url)
        if not links:
            raise ParseError(
                'an HTML page that announces no feed (no <link rel="alternate" '
                'type="application/rss+xml"> or atom+xml)'
            ) from exc
    errors = []
    for link in links[:MAX_DISCOVERED]:
        try:
            found = fetcher.fetch(link, allow_private=probe.allow_private, now=now)
            feed = extract(probe, found.body or b"", found.url, found.content_type, now)
            return Found(found.moved_to or link, feed, discovered_from=final)
        except (FetchError, ParseError) as exc:
            errors.append(f"{link}: {exc}")
    raise ParseError("none of the feeds the page announces could be read: " + "; ".join(errors))


def share_code_summary(entries: Sequence[EntryRecord], rule: ShareCodeRule) -> str:
    if not entries:
        return "the feed has no entries yet"
    by_rule = sum(1 for e in entries if e.code_rule == rule.name)
    if rule.name == "none":
        hint = suggest_share_param([e.link for e in entries if e.link])
        advice = f"; the links suggest --share-code-param {hint}" if hint else ""
        return f"no share-code rule: entries are identified by guid, link or a hash{advice}"
    return f"share-code rule {rule.name} found a code in {by_rule} of {len(entries)} entries"


@dataclass(frozen=True)
class NewSource:
    """What a URL offers as a new source: the [[sources]] table to add (values) and
    what its feed showed."""

    values: dict[str, Any]
    feed_title: str | None
    entries: int
    discovered_from: str | None  # the HTML page that announced the feed, if any
    share_code: str  # what the share-code rule made of the entries

    def report(self, written: bool) -> dict[str, Any]:
        return {
            "source": self.values,
            "feed_title": self.feed_title,
            "entries": self.entries,
            "discovered_from": self.discovered_from,
            "share_code": self.share_code,
            "written": written,
        }


def new_source(
    fetcher: Fetcher,
    config: Config,
    url: str,
    now: datetime,
    *,
    source_id: str | None = None,
    name: str | None = None,
    category: str | None = None,
    tags: Sequence[str] = (),
    interval: Any = None,
    share_code: dict[str, str] | None = None,
    disabled: bool = False,
    kind: str = "feed",
    select: dict[str, str] | None = None,
) -> NewSource:
    """Read the feed at URL (or the one it announces; for kind html or json, what the
    `select` selectors or paths find there) and make its [[sources]] table: the values
    given, the rest proposed (the name from the feed's title, else the host; the id
    from the name, not yet taken). Raises FetchError or ParseError, and ValueError for
    a `select` table that is not one."""
    rule = ShareCodeRule.from_config(share_code) if share_code else ShareCodeRule()
    probe = Source("new", "new", url, "new", share_code=rule, timezone=config.settings.timezone)
    if kind == "feed":
        found = find_feed(fetcher, url, probe, now)
    else:
        probe = replace(probe, kind=kind, select=check_selectors(select or {}, kind))
        read = probe_source(fetcher, probe, now)
        found = Found(read.moved_to or url, read.feed)
    host = urlsplit(found.url).hostname or found.url
    name = name or found.feed.title or host
    taken = {s.id for s in config.sources}
    values: dict[str, Any] = {
        "id": source_id or propose_id(name, found.url, taken),
        "name": name,
        "url": found.url,
        "category": category or name,
    }
    if tags:
        values["tags"] = list(dict.fromkeys(tags))
    if interval is not None:
        values["interval"] = interval
    if share_code:
        values["share_code"] = share_code
    if kind != "feed":
        values["kind"] = kind
        values["select"] = dict(select or {})
    if disabled:
        values["enabled"] = False
    entries = found.feed.entries
    return NewSource(
        values,
        found.feed.title,
        len(entries),
        found.discovered_from,
        share_code_summary(entries, rule),
    )


# --- checking a configured source --------------------------------------------------------------


def check_entry(entry: EntryRecord, source: Source) -> dict[str, Any]:
    """What storing would make of one entry: its identity (global or scoped to the
    source, and the rule that gave it), title, categories, tags, or why the source's
    filters drop it."""
    dropped = rejection(entry, source.filters)
    classified = classify(entry, source)
    found = identify(entry, source.share_code, source.id)
    return {
        "title": entry.title,
        "shown_title": shown_title(entry.title, entry.summary, entry.content, entry.link),
        "link": entry.link,
        "guid": entry.guid,
        "published": entry.published.isoformat() if entry.published else None,
        "published_raw": entry.published_raw,
        "author": entry.author,
        "text": shown_title("", entry.summary, entry.content, "") if entry.content else "",
        "images": [e.url for e in entry.enclosures],
        "identity": found.code,
        "scope": found.scope.value,
        "rule": found.rule,
        "share_code": entry.code,
        "share_code_rule": entry.code_rule,
        "feed_categories": list(entry.categories),
        "categories": [source.category, *classified.extra_categories],
        "tags": [*source.tags, *classified.extra_tags],
        "mapping_rules": [rule.name for rule in matching_rules(entry, source)],
        "kept": dropped is None,
        "dropped_because": dropped,
    }


def with_collisions(
    checked: list[dict[str, Any]], source: Source, stored: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Each checked entry with what its identity would meet: an earlier entry of the same
    feed (stored as one entry with it) and other sources already storing it (a global
    identity merges with theirs)."""
    first: dict[str, int] = {}
    for number, entry in enumerate(checked, start=1):
        entry["same_as_entry"] = first.setdefault(entry["identity"], number)
        if entry["same_as_entry"] == number:
            entry["same_as_entry"] = None
        entry["stored_from"] = [s for s in stored.get(entry["identity"], []) if s != source.id]
    return checked


def check_source(
    fetcher: Fetcher, source: Source, limit: int, now: datetime, database: Path | str | None = None
) -> dict[str, Any]:
    """Fetch and read a source, storing nothing: what its first `limit` entries would
    be stored as (check_entry, with_collisions), or the error that stopped it."""
    report: dict[str, Any] = {"id": source.id, "url": source.url, "ok": False}
    try:
        probe = probe_source(fetcher, source, now)
    except (FetchError, ParseError) as exc:
        report["error"] = str(exc)
        return report
    feed = probe.feed
    entries = list(feed.entries)  # extract gave them their identities
    rules: dict[str, int] = {}
    for entry in entries:
        rules[entry.code_rule] = rules.get(entry.code_rule, 0) + 1
    checked = [check_entry(entry, source) for entry in entries]
    identities = [c["identity"] for c in checked if c["scope"] == Scope.GLOBAL.value]
    stored = carriers_of(database, identities) if database is not None else {}
    checked = with_collisions(checked, source, stored)
    for shown, picked in zip(checked, probe.picked, strict=False):
        shown["picked"] = picked  # as the selectors or paths found it, for html and json
    report.update(
        ok=True,
        kind=source.kind,
        unmatched=probe.unmatched,
        article=probe.article,
        feed_title=feed.title,
        entries=len(entries),
        kept=sum(1 for c in checked if c["kept"]),
        configured_rule=source.share_code.name,
        share_code_rules=rules,
        scopes={s.value: sum(1 for c in checked if c["scope"] == s.value) for s in Scope},
        suggested_share_code_param=suggest_share_param([e.link for e in entries if e.link]),
        first=checked[:limit],
    )
    return report


# --- reading a source as a poll would ----------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A source read once: its entries with their identities, and for a page or an API
    what each item's selectors or paths picked, and the fields no item had."""

    url: str  # where the answer came from (after redirects)
    moved_to: str | None
    feed: ParsedFeed
    picked: list[dict[str, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    # For a full_text source: the first entry's article (link, text, error).
    article: dict[str, str] | None = None


def probe_source(
    fetcher: Fetcher, source: Source, now: datetime, limits: ParseLimits | None = None
) -> Probe:
    """Raises FetchError or ParseError, as a poll of the source would fail."""
    fetched = fetch_request(fetcher, source_request(source, now))
    body = fetched.body or b""
    feed = extract(source, body, fetched.url, fetched.content_type, now, limits)
    picked = picked_values(source, body, url=fetched.url, content_type=fetched.content_type)
    unmatched = unmatched_fields(source, picked)
    article = first_article(fetcher, source, feed, limits) if source.full_text.enabled else None
    return Probe(fetched.url, fetched.moved_to, feed, picked, unmatched, article)


def first_article(
    fetcher: Fetcher, source: Source, feed: ParsedFeed, limits: ParseLimits | None
) -> dict[str, str] | None:
    """What full text makes of the first entry with a link (fetched afresh)."""
    entry = next((e for e in feed.entries if e.link), None)
    if entry is None:
        return None
    full_text = FullText(fetcher, limits or ParseLimits(), ArticleCache(1))
    found = full_text.article(entry, source.full_text.selector)
    return {"link": entry.link, "text": plain_text(found.content), "error": found.error}


def selector_problems(fetcher: Fetcher, sources: Iterable[Source], now: datetime) -> list[str]:
    """What the html and json sources' selectors and paths miss on their pages now, one
    line a problem, each naming the source: `items` matching nothing, a field that no
    item has a value for, or the fetch that failed."""
    problems = []
    for source in sources:
        if source.kind == "feed":
            continue
        try:
            probe = probe_source(fetcher, source, now)
        except (FetchError, ParseError) as exc:
            problems.append(f"source {source.id!r}: {exc}")
            continue
        what = "selector" if source.kind == "html" else "path"
        for name in probe.unmatched:
            written = source.select.given().get(name, "(default)")
            problems.append(
                f"source {source.id!r}: select.{name}: the {what} {written!r} gives no value "
                f"in any of the {len(probe.picked)} items of {probe.url}"
            )
    return problems
