"""The render cache's row: every cached format of one entry, in one compressed blob.

The store keeps the blob beside the entry and drops it when the entry changes; what
is in it is the publisher's business alone.

Compressed with zlib, with the entry's stored content as the preset dictionary: the
fragments quote the article (the RSS description's first words, the title), and
a quote of the dictionary costs a few bytes. The formats of one entry share one blob
because they repeat each other too (title, links, source, dates). A blob that does
not unpack (a content changed without its row dropped) is a cache miss, never an
error: its entry is rendered again.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Render:
    """An entry's cached fragment in one output format: valid while context and shown
    updated match."""

    context: str
    shown: str  # the updated time shown, as text
    body: bytes  # the entry as it stands in a document of that format (publish.shells)


_WINDOW = 32768  # what zlib can refer back to: the dictionary's first bytes are used
_LEVEL = 6


def _dictionary(content: str) -> bytes:
    return content.encode("utf-8", "surrogatepass")[:_WINDOW]


# A pack is a head, then the bodies: the head gives each format's name, context,
# shown time and body length, fields apart by US and formats by RS (none of them can
# hold either: names are words, contexts digests, shown times ISO 8601).
_FIELD, _FORMAT, _END = b"\x1f", b"\x1e", b"\n"


def pack(renders: Mapping[str, Render], content: str) -> bytes:
    """One blob holding these renders (by format name) of an entry with this content."""
    names = sorted(renders)
    head = _FORMAT.join(
        _FIELD.join(
            (name.encode(), r.context.encode(), r.shown.encode(), str(len(r.body)).encode())
        )
        for name, r in ((name, renders[name]) for name in names)
    )
    data = b"".join((head, _END, *(renders[name].body for name in names)))
    compressor = zlib.compressobj(_LEVEL, zdict=_dictionary(content))
    return compressor.compress(data) + compressor.flush()


def unpack(blob: bytes, content: str) -> dict[str, Render]:
    """The renders packed with this content; {} when the blob does not unpack."""
    try:
        decompressor = zlib.decompressobj(zdict=_dictionary(content))
        data = decompressor.decompress(blob)
        if not decompressor.eof:  # cut short
            return {}
        head, _, bodies = data.partition(_END)
        renders: dict[str, Render] = {}
        start = 0
        for described in head.split(_FORMAT) if head else ():
            name, context, shown, length = described.split(_FIELD)
            stop = start + int(length)
            renders[name.decode()] = Render(context.decode(), shown.decode(), bodies[start:stop])
            start = stop
    except (zlib.error, ValueError):
        return {}
    return renders if start == len(bodies) else {}
