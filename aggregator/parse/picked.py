"""Entries from the values a source's selectors or paths picked out of a list page or
an API answer: the same normalisation as a feed's entries (parse.feed.entry_from_fields:
sanitized HTML, plain-text titles, absolute http(s) URLs, fields cut to their limits),
dates read as list pages write them (dates.page_date). Pure functions.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from aggregator.models import EntryRecord
from aggregator.parse.dates import is_relative, page_date
from aggregator.parse.feed import entry_from_fields
from aggregator.parse.limits import FieldLimits

# One item's picked values: field name (config.selectors.ENTRY_FIELDS) -> text.
Picked = Mapping[str, str]


def digest(values: Picked) -> str:
    """What a later poll compares to skip an item unread: its values, a date written
    relative to the poll ("3小时前") left out, as it changes while the item does not."""
    parts = [
        f"{name}={'~' if name == 'date' and is_relative(value) else value}"
        for name, value in sorted(values.items())
    ]
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


def entry_from_picked(
    values: Picked, base: str, timezone: str, seen_at: datetime, limits: FieldLimits
) -> EntryRecord:
    """One entry. `summary` is HTML (a page's fragment, or an API's text or HTML)."""
    raw_date = values.get("date", "")
    when = page_date(raw_date, timezone, seen_at) if raw_date else None
    image = values.get("image", "")
    fields: dict[str, Any] = {
        "id": values.get("guid", ""),
        "title": values.get("title", ""),
        "title_detail": {"type": "text/plain"},
        "link": values.get("link", ""),
        "summary": values.get("summary", ""),
        "summary_detail": {"type": "text/html"},
        "author": values.get("author", ""),
        "enclosures": [{"href": image, "type": mimetypes.guess_type(image)[0] or ""}]
        if image
        else [],
    }
    if raw_date:
        fields["published"] = raw_date
        fields["published_parsed"] = when.utctimetuple() if when else None
    return entry_from_fields(fields, base, timezone, seen_at, limits, digest(values))


def entries_from_items(
    items: Iterable[Picked],
    base: str,
    timezone: str,
    seen_at: datetime,
    limits: FieldLimits,
    known: Callable[[str], bool] | None,
) -> tuple[tuple[EntryRecord, ...], int]:
    """The entries of the first limits.entries items, and how many were skipped unread
    because `known` has their digest (asked once per item, in order)."""
    entries = []
    skipped = 0
    for index, values in enumerate(items):
        if index >= limits.entries:
            break
        if known is not None and known(digest(values)):
            skipped += 1
            continue
        entries.append(entry_from_picked(values, base, timezone, seen_at, limits))
    return tuple(entries), skipped
