"""Mapping rules and per-source filters, applied to entries before they are stored.

Pure functions over plain data. A *filter* decides whether a source's entry is
kept at all (include/exclude regexes on title and content); a *rule* gives a
kept entry extra categories or tags, matched on the entry's own ``<category>``
elements or by a regex on its title.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

from aggregator.models import EntryRecord
from aggregator.parse.sanitize import plain_text

if TYPE_CHECKING:
    from aggregator.config.loader import Source

from aggregator.config.loader import EntryFilter, Rule


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _first_match(patterns: Iterable[str], text: str) -> str | None:
    return next((p for p in patterns if _compiled(p).search(text)), None)


def entry_text(entry: EntryRecord) -> str:
    """The content filters look at: the entry's content and summary as plain text."""
    return plain_text(" ".join(part for part in (entry.content, entry.summary) if part))


def rejection(entry: EntryRecord, filters: EntryFilter) -> str | None:
    """Why the filters drop this entry, or None when it is kept."""
    if not filters:
        return None
    text = entry_text(entry) if (filters.include_content or filters.exclude_content) else ""
    if (pattern := _first_match(filters.exclude_title, entry.title)) is not None:
        return f"exclude_title {pattern!r} matches the title"
    if (pattern := _first_match(filters.exclude_content, text)) is not None:
        return f"exclude_content {pattern!r} matches the content"
    if filters.include_title or filters.include_content:
        if _first_match(filters.include_title, entry.title) is not None:
            return None
        if _first_match(filters.include_content, text) is not None:
            return None
        return "matches no include_title/include_content pattern"
    return None


def matches(rule: Rule, entry: EntryRecord, source_id: str) -> bool:
    if rule.sources and source_id not in rule.sources:
        return False
    if rule.match_category:
        wanted = {c.casefold() for c in rule.match_category}
        if not any(c.casefold() in wanted for c in entry.categories):
            return False
    return rule.match_title is None or bool(_compiled(rule.match_title).search(entry.title))


def _new(values: Iterable[str], existing: Iterable[str]) -> tuple[str, ...]:
    seen = set(existing)
    return tuple(v for v in dict.fromkeys(values) if v not in seen)


def matching_rules(entry: EntryRecord, source: Source) -> list[Rule]:
    return [rule for rule in source.rules if matches(rule, entry, source.id)]


def classify(entry: EntryRecord, source: Source) -> EntryRecord:
    """The entry with the categories and tags the source's rules add to the source's own."""
    matched = matching_rules(entry, source)
    if not matched:
        return entry
    return replace(
        entry,
        extra_categories=_new((c for r in matched for c in r.add_categories), [source.category]),
        extra_tags=_new((t for r in matched for t in r.add_tags), source.tags),
    )


def filter_and_classify(entries: Iterable[EntryRecord], source: Source) -> list[EntryRecord]:
    """The entries to store: filtered by the source's filters, classified by its rules."""
    return [classify(e, source) for e in entries if rejection(e, source.filters) is None]
