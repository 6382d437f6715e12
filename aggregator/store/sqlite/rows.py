"""How rows are read and written: times, JSON columns, StoredArticle rows, long IN lists."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from aggregator.models import Enclosure
from aggregator.store.records import StoredArticle, from_iso

# An entry as article_of reads it: its row, its tags and its categories (sorted).
ARTICLE_COLUMNS = """e.*,
    (SELECT json_group_array(name) FROM (SELECT name FROM entry_tags t
       WHERE t.code = e.code ORDER BY name)) AS tag_names,
    (SELECT json_group_array(name) FROM (SELECT name FROM entry_categories c
       WHERE c.code = e.code ORDER BY name)) AS category_names"""

# SQLite allows a limited number of parameters per statement: long IN lists go in chunks.
_CHUNK = 500


def chunks(values: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """Each chunk of values with its "?,?,..." placeholders."""
    for start in range(0, len(values), _CHUNK):
        chunk = list(values[start : start + _CHUNK])
        yield chunk, ",".join("?" * len(chunk))


@functools.lru_cache(maxsize=1024)
def json_list(values: tuple[str, ...]) -> str:
    # Remembered: the entries of a feed mostly share a few lists of categories.
    return json.dumps(list(values), ensure_ascii=False) if values else "[]"


def json_enclosures(enclosures: Sequence[Enclosure]) -> str:
    if not enclosures:
        return "[]"
    return json.dumps([[e.url, e.type, e.length] for e in enclosures], ensure_ascii=False)


def utc(value: str) -> datetime:
    parsed = from_iso(value)
    assert parsed is not None
    return parsed


def article_of(row: dict[str, Any]) -> StoredArticle:
    published = from_iso(row["published"])
    updated = from_iso(row["updated"])
    assert published is not None and updated is not None
    return StoredArticle(
        code=row["code"],
        title=row["title"],
        link=row["link"],
        published=published,
        updated=updated,
        author=row["author"],
        summary=row["summary"],
        content=row["content"],
        categories=tuple(json.loads(row["categories"])),
        enclosures=tuple(Enclosure(u, t, n) for u, t, n in json.loads(row["enclosures"])),
        source_id=row["source_id"],
        tags=tuple(json.loads(row["tag_names"])),
        entry_categories=tuple(json.loads(row["category_names"])),
    )
