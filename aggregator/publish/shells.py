"""An entry's cached fragment without the article's HTML in it. Pure.

The content is most of a fragment and the store holds it already, so a cached body
leaves it out and a document's assembly writes it back, as the format writes it:
each format's fragments cost a few hundred bytes of markup instead of another copy
of the article. A body is one flag byte and a fragment: WHOLE and the fragment as
rendered, or SHELL and the fragment with the written content replaced by HOLE.
"""

from __future__ import annotations

from collections.abc import Callable

WHOLE = b"w"
SHELL = b"s"
# NUL is in no fragment: XML cannot hold it and JSON writes it as an escape.
HOLE = b"\x00"
SMALLEST = 64  # bytes of written content: a shorter one stays in its fragment


def cut(fragment: bytes, written: bytes) -> bytes:
    """The body to cache for a fragment that holds its entry's content as `written`
    (b"" when the fragment's content is not the stored one)."""
    if len(written) >= SMALLEST and HOLE not in fragment and fragment.count(written) == 1:
        return SHELL + fragment.replace(written, HOLE)
    return WHOLE + fragment


def fill(body: bytes, written: Callable[[], bytes]) -> bytes:
    """The fragment a cached body stands for: the stored content as the format
    writes it (written(), asked only when needed) back in its hole."""
    if body[:1] == SHELL:
        return body[1:].replace(HOLE, written(), 1)
    return body[1:]
