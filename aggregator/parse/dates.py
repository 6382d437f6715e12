"""Entry dates: parse what feeds send, keep them sane. Pure functions.

Feeds send RFC 822, RFC 3339, and on Chinese sites things like
``2021年12月24日 10:30`` or ``2021-12-24 10:30:00`` with no zone (which
means the source's own zone). Nothing here raises on bad input.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from feedparser.datetimes import _parse_date

MIN_YEAR = 1990
FUTURE_SLACK = timedelta(days=1)
# No zone is further from UTC than this (Kiribati's +14:00): "+2500" is no offset.
_MAX_OFFSET = "1400"

_CHINESE = re.compile(
    r"(\d{4})\s*[年/.\-]\s*(\d{1,2})\s*[月/.\-]\s*(\d{1,2})\s*日?"
    r"(?:\s*T?\s*(\d{1,2})\s*[:时点]\s*(\d{1,2})\s*分?(?:\s*:?\s*(\d{1,2})(?:\.\d+)?\s*秒?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


# The two shapes nearly every feed sends, exactly as written by RSS 2.0 and Atom
# generators; anything else (other case, spacing, zones) goes to feedparser.
_RFC822 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d\d):(\d\d):(\d\d) "
    r"(?:([+-])(\d\d)(\d\d)|GMT|UTC?|Z)\Z"
)
_W3DTF = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)(?:Z|([+-])(\d\d):(\d\d))\Z"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def feedparser_date(text: str) -> time.struct_time | None:
    """feedparser's reading of a date (its _parse_date: a UTC struct_time or None).

    RFC 822 and W3C-DTF dates in their usual spelling are read here, by the same
    arithmetic as feedparser's handlers for them (which are the first to accept
    such a string); every other string, and any value those handlers would refuse,
    goes to _parse_date itself. tests/test_fast_paths.py holds the two to agreement.
    """
    match = _RFC822.match(text)
    if match:
        day, month, year, hour, minute, second = match.group(1, 2, 3, 4, 5, 6)
        numbers = (int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second))
        found = _utc(numbers, *match.group(7, 8, 9))
    else:
        match = _W3DTF.match(text)
        if match:
            year, month, day, hour, minute, second = match.group(1, 2, 3, 4, 5, 6)
            numbers = (int(year), int(month), int(day), int(hour), int(minute), int(float(second)))
            found = _utc(numbers, *match.group(7, 8, 9))
        else:
            found = None
    if found is None:
        found = _parse_date(text)
    return found


def _utc(
    numbers: tuple[int, int, int, int, int, int], sign: str | None, hours: str, minutes: str
) -> time.struct_time | None:
    """The local time less its zone offset, as feedparser computes it; None where
    feedparser's handler would give up (and another handler might read it)."""
    try:
        stamp = datetime(*numbers)
        if sign is None:
            return stamp.utctimetuple()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return (stamp - offset if sign == "+" else stamp + offset).utctimetuple()
    except (ValueError, OverflowError):
        return None


def from_struct(value: time.struct_time | None) -> datetime | None:
    """feedparser's *_parsed values are UTC struct_times."""
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def parse_local(text: str, tz: str) -> datetime | None:
    """Dates feedparser does not know, read in the source's time zone."""
    match = _CHINESE.match((text or "").strip())
    if not match:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    if int(year) < MIN_YEAR:
        return None
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        if offset == "Z":
            return local.replace(tzinfo=UTC)
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return (local - sign * delta).replace(tzinfo=UTC)
    return local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def sane(value: datetime | None, seen_at: datetime) -> datetime | None:
    """A date we can believe, or None.

    Nonsense years and dates well in the future (more than a day past the
    poll) give None: the store then uses the time the entry was first seen,
    and keeps it on later polls, so a future date is clamped to first-seen
    time rather than to each poll's time.
    """
    if value is None:
        return None
    if value.year < MIN_YEAR:
        return None
    if value > seen_at + FUTURE_SLACK:
        return None
    return value


def entry_date(raw: str | None, parsed: time.struct_time | None, tz: str) -> datetime | None:
    """The best reading of one date field: feedparser's, unless it missed the zone or failed.
    A date whose zone offset no zone has is unreadable (None), as feedparser would
    leave any other it cannot read."""
    if raw and impossible_offset(raw):
        return None
    if raw and _CHINESE.match(raw.strip()):
        return parse_local(raw, tz)
    return from_struct(parsed)


def impossible_offset(raw: str) -> bool:
    """Whether a date and time ends in a zone offset ("03:00:26 +0800", "T10:30-05:00",
    "GMT+2500") beyond +-14:00 or with over 59 minutes. By hand, and the usual offsets
    let go after a look at their digits: a pattern searched for cost more than the rest
    of reading the date."""
    text = raw.rstrip() if raw[-1:].isspace() else raw  # an offset ends before blanks
    colon = text[-3:-2] == ":"
    hours, minutes = (text[-5:-3], text[-2:]) if colon else (text[-4:-2], text[-2:])
    if hours < "14" and minutes < "60":  # "+0800", or no offset at all (" GMT" is < "14")
        return False
    sign = len(text) - (6 if colon else 5)
    digits = hours + minutes
    if text[sign : sign + 1] not in ("+", "-") or not digits.isdigit():
        return False
    if text.find(":", 0, sign) < 0:  # no time before it: "24-12-2021"
        return False
    return minutes > "59" or digits > _MAX_OFFSET  # digit strings of one length


def to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- dates on list pages and in APIs ------------------------------------------------------

_MONTH_DAY = re.compile(
    r"(\d{1,2})\s*[月/.\-]\s*(\d{1,2})\s*日?(?:\s+(\d{1,2})\s*[:时点]\s*(\d{1,2})\s*分?"
    r"(?:\s*:\s*(\d{1,2}))?)?\s*$"
)
_AGO = re.compile(r"(\d+)\s*(秒|分钟|分|小时|个小时|天|日|周|星期|个月|月|年)前\s*$")
_AGO_SECONDS = {
    "秒": 1,
    "分钟": 60,
    "分": 60,
    "小时": 3600,
    "个小时": 3600,
    "天": 86400,
    "日": 86400,
    "周": 7 * 86400,
    "星期": 7 * 86400,
    "个月": 30 * 86400,
    "月": 30 * 86400,
    "年": 365 * 86400,
}
_DAY_WORDS = {"今天": 0, "昨天": 1, "前天": 2}
_DAY_WORD = re.compile(r"(今天|昨天|前天)\s*(?:(\d{1,2})\s*[:时点]\s*(\d{1,2})\s*分?)?\s*$")
_JUST_NOW = ("刚刚", "刚才")
# Unix times in seconds or milliseconds, as JSON APIs send them (2001 to 2286).
_EPOCH = re.compile(r"\d{10}(?:\d{3})?(?:\.\d+)?")


def is_relative(text: str) -> bool:
    """Whether a date is written relative to when the page was read ("3小时前",
    "昨天 10:30"): such a text changes while the date it means does not."""
    text = text.strip()
    return bool(_AGO.search(text) or _DAY_WORD.match(text) or text in _JUST_NOW)


def page_date(text: str, tz: str, now: datetime) -> datetime | None:
    """A date as list pages and APIs write them, in the source's zone `tz`:
    what entry dates accept (``2021-12-24 03:00``, ``2021年12月24日``, RFC 822, ISO 8601),
    a date without its year (``12-24 03:00``: the latest such day not after `now`),
    relative ones (``3小时前``, ``昨天 10:30``, ``刚刚``, against `now`) and Unix times.
    None when unreadable."""
    text = (text or "").strip().strip("()[]（）【】").strip()  # "(2021-12-24)" in a list
    if not text:
        return None
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    if _EPOCH.fullmatch(text):
        seconds = float(text) / (1000 if len(text.partition(".")[0]) == 13 else 1)
        return datetime.fromtimestamp(seconds, UTC)
    if text in _JUST_NOW:
        return now
    ago = _AGO.search(text)
    if ago:
        return now - timedelta(seconds=int(ago.group(1)) * _AGO_SECONDS[ago.group(2)])
    word = _DAY_WORD.match(text)
    if word:
        then = (local_now - timedelta(days=_DAY_WORDS[word.group(1)])).date()
        hour, minute = int(word.group(2) or 0), int(word.group(3) or 0)
        return _local(then.year, then.month, then.day, hour, minute, 0, zone)
    short = _MONTH_DAY.match(text)
    if short and not _CHINESE.match(text):
        month, day, hour, minute, second = (int(g or 0) for g in short.groups())
        found = _local(local_now.year, month, day, hour, minute, second, zone)
        if found is not None and found > now + FUTURE_SLACK:  # December's, read in January
            found = _local(local_now.year - 1, month, day, hour, minute, second, zone)
        return found
    return entry_date(text, feedparser_date(text), tz)


def _local(
    year: int, month: int, day: int, hour: int, minute: int, second: int, zone: ZoneInfo
) -> datetime | None:
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=zone).astimezone(UTC)
    except ValueError:
        return None
