"""Edit the ``[[sources]]`` of config/sources.toml without disturbing anything else.

The config file is the single source of truth and operators keep comments in
it, so edits are made on the text: a new source is spliced in after the last
one, a removed source's lines are cut out, a changed key is rewritten in place
(by tomlkit, which keeps the line's comment). Every other byte stays as it was.

Each edit is checked twice before anything is written: the edited text must
parse to exactly the data intended (the old data with the one change), and the
result must be a valid config (config.parse_config). The file is then replaced
atomically. The text functions are pure; only ``save`` touches the disk.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli
import tomlkit
from tomlkit.items import AoT, Table

from aggregator.config.loader import SOURCE_KEYS, Config, feed_url_key, parse_config
from aggregator.config.slugs import slugify
from aggregator.errors import AggregatorError, ConfigNotFound
from aggregator.files import write_if_changed

# The order keys are written in when a source is added.
KEY_ORDER = ("id", "name", "url", "category", "tags", "interval", "share_code", "enabled")
_SOURCES_HEADER = re.compile(
    r"^[ \t]*\[\[[ \t]*(?:sources|\"sources\"|'sources')[ \t]*\]\][ \t]*(?:#[^\n]*)?$", re.M
)
_ANY_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*[A-Za-z0-9_.\"' -]+[ \t]*\]\]?[ \t]*(?:#.*)?$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class SourceFileError(AggregatorError):
    """An edit was refused: duplicate, unknown source, or a file we cannot edit safely."""


# --- rendering values the way people write them ----------------------------------------


def render_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else tomlkit.item(key).as_string()


def render_value(value: Any) -> str:
    """A TOML value as one line: regexes as 'literal strings', { spaced } inline tables."""
    if isinstance(value, str):
        if "\\" in value and "'" not in value and "\n" not in value:
            return f"'{value}'"  # a literal string: regexes stay readable
        return tomlkit.item(value).as_string()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{render_key(k)} = {render_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return str(tomlkit.item(value).as_string())


def render_source(values: Mapping[str, Any]) -> str:
    """A [[sources]] table, keys in the usual order."""
    ordered = [k for k in KEY_ORDER if k in values] + [k for k in values if k not in KEY_ORDER]
    lines = ["[[sources]]"] + [f"{render_key(k)} = {render_value(values[k])}" for k in ordered]
    return "\n".join(lines) + "\n"


# --- where each source is in the text --------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Offsets of one [[sources]] table: header line, body, and the last key's line end."""

    header_start: int
    body_start: int
    content_end: int  # end of the last line that is neither blank nor a comment
    body_end: int  # the body includes the trailing comments and blank lines


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _content_end(text: str, start: int, end: int) -> int:
    position = start
    offset = start
    for line in text[start:end].splitlines(keepends=True):
        offset += len(line)
        if _is_content(line):
            position = offset
    return position


def _source_tables(doc: tomlkit.TOMLDocument) -> list[Table]:
    if "sources" not in doc:
        return []
    sources = doc["sources"]
    if not isinstance(sources, AoT):
        raise SourceFileError("`sources` is not written as [[sources]] tables; edit it by hand")
    return list(sources)


def locate(text: str) -> tuple[tomlkit.TOMLDocument, list[Span]]:
    """Parse the text and find each [[sources]] table in it.

    A header found by the scanner counts only when the table body tomlkit
    parsed follows it verbatim, so a "[[sources]]" inside a string is ignored.
    """
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise SourceFileError(f"the config file is not valid TOML: {exc}") from None
    tables = _source_tables(doc)
    spans: list[Span] = []
    for match in _SOURCES_HEADER.finditer(text):
        if len(spans) == len(tables):
            break
        body_start = min(len(text), match.end() + 1)
        body = tables[len(spans)].as_string()
        if text.startswith(body, body_start):
            body_end = body_start + len(body)
            content_end = max(body_start, _content_end(text, body_start, body_end))
            spans.append(Span(match.start(), body_start, content_end, body_end))
    if len(spans) != len(tables):
        raise SourceFileError("cannot find every [[sources]] table in the text; edit it by hand")
    return doc, spans


def _data(text: str) -> dict[str, Any]:
    try:
        return tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise SourceFileError(f"the config file is not valid TOML: {exc}") from None


def _sources_data(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    sources = data.get("sources", [])
    return sources if isinstance(sources, list) else []


def _index(data: Mapping[str, Any], source_id: str) -> int:
    for index, table in enumerate(_sources_data(data)):
        if isinstance(table, dict) and table.get("id") == source_id:
            return index
    raise SourceFileError(f"no source with id {source_id!r} in the config file")


def _same_url(a: str, b: str) -> bool:
    return feed_url_key(a) == feed_url_key(b)


def _refuse_duplicates(data: Mapping[str, Any], values: Mapping[str, Any], skip: int) -> None:
    """Refuse a source whose id or URL another source (not number `skip`) already has."""
    for index, table in enumerate(_sources_data(data)):
        if index == skip or not isinstance(table, dict):
            continue
        other = table.get("id", f"number {index + 1}")
        if "id" in values and table.get("id") == values["id"]:
            raise SourceFileError(f"a source with id {values['id']!r} already exists")
        url = values.get("url")
        if (
            isinstance(url, str)
            and isinstance(table.get("url"), str)
            and _same_url(url, table["url"])
        ):
            raise SourceFileError(f"{url} is already configured, as source {other!r}")


def refuse_duplicates(text: str, values: Mapping[str, Any]) -> None:
    """Raise SourceFileError when a source with this id or URL is already in the text."""
    _refuse_duplicates(_data(text), values, skip=-1)


def _checked(new_text: str, expected: dict[str, Any]) -> str:
    """The new text, once it parses to exactly the data we meant to write."""
    try:
        actual = tomli.loads(new_text)
    except tomli.TOMLDecodeError as exc:  # pragma: no cover - a bug in the splicing
        raise SourceFileError(f"the edit would break the file ({exc}); edit it by hand") from None
    if actual != expected:
        raise SourceFileError("the edit did not come out as intended; edit the file by hand")
    return new_text


# --- the edits (pure: text in, text out) -----------------------------------------------


def add_source(text: str, values: Mapping[str, Any]) -> str:
    """Append a [[sources]] table after the last one (or at the end of the file)."""
    return add_sources(text, [values])


def add_sources(text: str, new_sources: Sequence[Mapping[str, Any]]) -> str:
    """Append several [[sources]] tables at once, in order, after the last one."""
    data = _data(text)
    expected = copy.deepcopy(data)
    for values in new_sources:
        _refuse_duplicates(expected, values, skip=-1)
        expected.setdefault("sources", []).append(dict(values))
    if not new_sources:
        return text
    _doc, spans = locate(text)
    tables = "\n".join(render_source(values) for values in new_sources)
    if spans:
        at = spans[-1].content_end
        new_text = text[:at] + "\n" + tables + text[at:]
    else:
        base = text if not text or text.endswith("\n") else text + "\n"
        new_text = base + ("\n" if base.strip() else "") + tables
    return _checked(new_text, expected)


def remove_source(text: str, source_id: str) -> str:
    """Cut out the source's header, keys and the comments among them; keep the rest."""
    data = _data(text)
    index = _index(data, source_id)
    _doc, spans = locate(text)
    span = spans[index]
    end = span.content_end
    for line in text[end : span.body_end].splitlines(keepends=True):
        if line.strip():
            break
        end += len(line)  # the blank lines after it, not the comments
    start = span.header_start
    if end >= len(text):  # the last thing in the file: drop the blank lines before it too
        while start > 0 and text[:start].endswith("\n\n"):
            start -= 1
    expected = copy.deepcopy(data)
    del expected["sources"][index]
    if not expected["sources"]:
        del expected["sources"]
    return _checked(text[:start] + text[end:], expected)


def _insert_point(text: str, span: Span) -> int:
    """Where a new key of this source goes: after its last key, before any sub-table."""
    offset = span.body_start
    for line in text[span.body_start : span.body_end].splitlines(keepends=True):
        if _ANY_HEADER.match(line.rstrip("\r\n")):
            return _content_end(text, span.body_start, offset)
        offset += len(line)
    return span.content_end


def update_source(text: str, source_id: str, changes: Mapping[str, Any | None]) -> str:
    """Set keys of one source (a value of None removes the key), in place."""
    data = _data(text)
    index = _index(data, source_id)
    current = _sources_data(data)[index]
    _refuse_duplicates(data, {k: v for k, v in changes.items() if v is not None}, skip=index)
    expected = copy.deepcopy(data)
    target = expected["sources"][index]
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    new_text = text
    for key, value in changes.items():
        doc, spans = locate(new_text)
        table = _source_tables(doc)[index]
        span = spans[index]
        if value is None and key not in current:
            continue
        if key in table:
            if value is None:
                del table[key]
            else:
                table[key] = tomlkit.value(render_value(value))
            body = table.as_string()
            new_text = new_text[: span.body_start] + body + new_text[span.body_end :]
        elif value is not None:
            at = _insert_point(new_text, span)
            line = f"{render_key(key)} = {render_value(value)}\n"
            if at > 0 and new_text[at - 1] != "\n":
                line = "\n" + line
            new_text = new_text[:at] + line + new_text[at:]
        current = {**current, key: value}
    return _checked(new_text, expected)


def set_enabled(text: str, source_id: str, enabled: bool) -> str:
    """enabled = false to disable; to enable, true where the key is written, else nothing."""
    table = _sources_data(_data(text))[_index(_data(text), source_id)]
    if enabled and "enabled" not in table:
        return text
    return update_source(text, source_id, {"enabled": enabled})


# --- reading and writing the file --------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How a config file is spelt beyond its text, so that an edit keeps it: a byte-order
    mark, and its line ends (the edits work on "\n")."""

    bom: bool = False
    newline: str = "\n"

    @classmethod
    def of(cls, raw: str) -> Layout:
        crlf = raw.count("\r\n")
        return cls(raw.startswith("\ufeff"), "\r\n" if crlf > raw.count("\n") - crlf else "\n")

    @staticmethod
    def text_of(raw: str) -> str:
        return raw.removeprefix("\ufeff").replace("\r\n", "\n")

    def spell(self, text: str) -> bytes:
        return (("\ufeff" if self.bom else "") + text.replace("\n", self.newline)).encode("utf-8")


def _read_raw(path: Path) -> str:
    """The file's text exactly (read_text would turn its line ends into "\n")."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        relative_to = None if path.is_absolute() else str(Path.cwd())
        raise ConfigNotFound(str(path), str(path.absolute()), relative_to) from None
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"cannot read {path}: not UTF-8 ({exc})") from None
    except OSError as exc:
        raise SourceFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def read(path: Path) -> str:
    """The file's text, with "\n" line ends and no byte-order mark (see Layout).
    Raises ConfigNotFound when there is no file, SourceFileError when it is unreadable."""
    return Layout.text_of(_read_raw(path))


def validate(text: str, path: Path) -> Config:
    """The config the text describes, ignoring the environment. Raises ConfigError."""
    return parse_config(text, path, env={})


def save(path: Path, text: str) -> Config:
    """Validate, then replace the file atomically. Returns the new config.

    The file keeps its line ends, byte-order mark, mode and owner (its headers may
    hold tokens); a symbolic link stays a link, and the file it points to is edited.
    """
    config = validate(text, path)
    target = path.resolve()
    try:
        layout = Layout.of(_read_raw(target))
    except ConfigNotFound:
        layout = Layout()
    write_if_changed(target, layout.spell(text), keep_attributes=True)
    return config


def source_values(text: str, source_id: str) -> dict[str, Any]:
    """The source's table as written in the file (plain data)."""
    data = _data(text)
    return dict(_sources_data(data)[_index(data, source_id)])


def known_key(key: str) -> bool:
    return key in SOURCE_KEYS


_ID_LIMIT = 64


def propose_id(name: str, url: str, taken: Collection[str]) -> str:
    """A source id from the name (romanized), else the host; unique among `taken`."""
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    base = slugify(name) if name.strip() else ""
    if not base or base.startswith("x-"):  # slugify's fallback for unreadable names
        base = slugify(host.replace(".", "-")) if host else "source"
    base = base[:_ID_LIMIT].strip("-") or "source"
    candidate = base
    number = 2
    while candidate in taken:
        suffix = f"-{number}"
        candidate = base[: _ID_LIMIT - len(suffix)].rstrip("-") + suffix
        number += 1
    return candidate
