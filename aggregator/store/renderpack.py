"""The render cache's row: every cached format of one entry, in one compressed blob.

Compressed with zlib, with the entry's stored content as the preset dictionary: the
fragments quote the article (the RSS description's first words, the title), and
a quote of the dictionary costs a few bytes. The formats of one entry share one blob
because they repeat each other too (title, links, source, dates). A blob that does
not unpack (a content changed without its row dropped) is a cache miss, never an
error: its entry is rendered again.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping

from aggregator.store.records import Render

_WINDOW = 32768  # what zlib can refer back to: the dictionary's first bytes are used
_LEVEL = 6


def _dictionary(content: str) -> bytes:
    return content.encode("utf-8", "surrogatepass")[:_WINDOW]


def pack(renders: Mapping[str, Render], content: str) -> bytes:
    """One blob holding these renders (by format name) of an entry with this content."""
    names = sorted(renders)
    head = [
        [name, renders[name].context, renders[name].shown, len(renders[name].body)]
        for name in names
    ]
    data = b"".join(
        (json.dumps(head).encode("utf-8"), b"\n", *(renders[name].body for name in names))
    )
    compressor = zlib.compressobj(_LEVEL, zdict=_dictionary(content))
    return compressor.compress(data) + compressor.flush()


def unpack(blob: bytes, content: str) -> dict[str, Render]:
    """The renders packed with this content; {} when the blob does not unpack."""
    try:
        decompressor = zlib.decompressobj(zdict=_dictionary(content))
        data = decompressor.decompress(blob) + decompressor.flush()
        if not decompressor.eof:  # cut short
            return {}
        head, _, bodies = data.partition(b"\n")
        renders: dict[str, Render] = {}
        start = 0
        for name, context, shown, length in json.loads(head):
            renders[name] = Render(context, shown, bodies[start : start + length])
            start += length
    except (zlib.error, ValueError, TypeError):
        return {}
    return renders if start == len(bodies) else {}
