"""Share-code rule kinds, in one registry: how a source's ``share_code = { KIND = VALUE }``
is checked when the config is read, and how the rule finds a code in a link or guid.

A kind is one RuleKind and one register() call. Pure functions over strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aggregator.urls import query_value


@dataclass(frozen=True)
class RuleKind:
    key: str  # written as share_code = { key = "..." }
    example: str  # a value shown in error messages
    check: Callable[[str], None]  # raises ValueError for a value this kind cannot use
    extract: Callable[[str, str], str | None]  # (link or guid, value) -> the code in it
    label: Callable[[str], str]  # the rule's name, as `sources check` and the status show it


KINDS: dict[str, RuleKind] = {}


def register(kind: RuleKind) -> RuleKind:
    KINDS[kind.key] = kind
    return kind


@dataclass(frozen=True)
class ShareCodeRule:
    """How to find an article's share code in its link (then its guid): a kind of
    KINDS and its value; no kind is no rule."""

    kind: str = ""
    value: str = ""

    @classmethod
    def from_config(cls, table: Any) -> ShareCodeRule:
        """The rule a source's share_code table describes, checked; raises ValueError."""
        keys = " or ".join(KINDS)
        if not isinstance(table, dict):
            shown = " or ".join(f"{{ {k.key} = {k.example} }}" for k in KINDS.values())
            raise ValueError(f"expected {shown}")
        if len(table) != 1 or not set(table) <= set(KINDS):
            first = next(iter(KINDS.values()))
            raise ValueError(
                f"expected exactly one of {keys}, e.g. {{ {first.key} = {first.example} }}"
            )
        ((key, value),) = table.items()
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a non-empty string, got {value!r}")
        KINDS[key].check(value)
        return cls(key, value)

    @property
    def name(self) -> str:
        return KINDS[self.kind].label(self.value) if self.kind else "none"

    def find(self, text: str) -> str | None:
        """The code this rule finds in one link or guid, if any."""
        return KINDS[self.kind].extract(text, self.value) if self.kind else None

    def __repr__(self) -> str:
        # run.poll.source_salt hashes repr(source): the spelling of the releases before
        # kinds were a registry keeps every stored raw digest valid.
        if self.kind in ("", "param", "regex"):
            param = self.value if self.kind == "param" else None
            regex = self.value if self.kind == "regex" else None
            return f"ShareCodeRule(param={param!r}, regex={regex!r})"
        return f"ShareCodeRule(kind={self.kind!r}, value={self.value!r})"


# --- the kinds ------------------------------------------------------------------------------


def _no_check(value: str) -> None:
    pass


def _check_regex(pattern: str) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    if compiled.groups != 1:
        raise ValueError("the regex must have exactly one group, the share code")


def _regex_code(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1).strip() if match and match.group(1) else None


register(
    RuleKind(
        key="param",
        example='"infoCode"',
        check=_no_check,
        extract=query_value,
        label=lambda name: f"param:{name}",
    )
)
register(
    RuleKind(
        key="regex",
        example='"..."',
        check=_check_regex,
        extract=_regex_code,
        label=lambda pattern: "regex",
    )
)
