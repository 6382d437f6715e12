"""Read a JSON API's answer (a source of kind "json") into entries, with the source's
JMESPath paths (config.selectors): `items` to the list of entries, the others to a
field of one entry.

The answer is decoded as feeds are (encoding.py: some Chinese APIs answer in GBK)
and read with the standard library's C decoder: linear in the size the fetcher
caps, nothing to expand. A field that is a string or a number is taken as it is
(a number date is a Unix time, in seconds or milliseconds); a list gives its first
such value; anything else, nothing. `summary` may be text or HTML.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from aggregator.config.selectors import ENTRY_FIELDS, Selectors, json_path
from aggregator.errors import ParseError
from aggregator.models import ParsedFeed
from aggregator.parse.encoding import decode
from aggregator.parse.limits import MAX_GUID, FieldLimits
from aggregator.parse.picked import Picked, entries_from_items
from aggregator.parse.sanitize import absolute_http_url, http_base
from aggregator.parse.xmlchars import strip_control


def read_answer(body: bytes, content_type: str = "") -> Any:
    """The decoded JSON document. Raises ParseError when it is not JSON."""
    text = decode(body, content_type).text.lstrip("\ufeff")
    try:
        return json.loads(text)
    except RecursionError:
        raise ParseError("not usable: JSON nested too deep") from None
    except ValueError as exc:
        raise ParseError(f"not JSON: {exc}") from None


def scalar(value: Any) -> str:
    """A field's text (see the module's docstring)."""
    if isinstance(value, list):
        return next((s for s in map(scalar, value) if s), "")
    if isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return ""


def item_list(document: Any, selectors: Selectors) -> list[Any]:
    """What `items` finds: a list (an object is a list of its values). Raises ParseError
    when it finds none, so a changed API shows as a failing source."""
    found = json_path(selectors.items).search(document)
    if isinstance(found, dict):
        found = list(found.values())
    if not isinstance(found, list):
        raise ParseError(f"the items path {selectors.items!r} finds no list in the answer")
    return found


def picked_items(document: Any, selectors: Selectors) -> Iterator[Picked]:
    given = selectors.given()
    for item in item_list(document, selectors):
        values = {
            name: scalar(json_path(given[name]).search(item))
            for name in ENTRY_FIELDS
            if name in given
        }
        yield {name: value for name, value in values.items() if value}


def parse_json_api(
    body: bytes,
    *,
    url: str,
    content_type: str = "",
    selectors: Selectors,
    timezone: str = "Asia/Shanghai",
    seen_at: datetime,
    limits: FieldLimits | None = None,
    known: Callable[[str], bool] | None = None,
) -> ParsedFeed:
    """The answer's entries; items whose digest `known` has are skipped unread."""
    limits = limits or FieldLimits()
    document = read_answer(body, content_type)
    entries, skipped = entries_from_items(
        picked_items(document, selectors), http_base(url), timezone, seen_at, limits, known
    )
    return ParsedFeed(
        version="json-api",
        title="",
        link=absolute_http_url(url),
        feed_id=strip_control(url)[:MAX_GUID],
        entries=entries,
        skipped=skipped,
    )
