"""How rows are read: StoredArticle rows (article_of, aggregator.store.columns), long IN lists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from aggregator.store.columns import article_of, json_enclosures, json_list, utc

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


__all__ = ["ARTICLE_COLUMNS", "article_of", "chunks", "json_enclosures", "json_list", "utc"]
