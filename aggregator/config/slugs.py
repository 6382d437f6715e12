"""Readable ASCII slugs for category and tag names, in any script.

Chinese names are segmented into words (jieba) and spelled in pinyin, so
三秦都市报新闻 becomes ``sanqin-dushibao-xinwen``. Pure functions, and KnownSlugs:
the slugs worked out before, which the config loader keeps on a shelf (a file beside
an SQLite database, or the PostgreSQL database itself: see loader.load_config) so
that jieba and pypinyin are loaded only for a new name.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

_NON_SLUG = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=1)
def _han() -> re.Pattern[str]:
    """Chinese characters; compiled on first use, so a command with every slug known
    never pays for it."""
    return re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _segmenter() -> object:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def _words(text: str) -> list[str]:
    if not _han().search(text):
        return [text]
    jieba = _segmenter()
    return [w for w in jieba.lcut(text) if w.strip()]  # type: ignore[attr-defined]


def _romanize(word: str) -> str:
    if not _han().search(word):
        return word
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(word, style=Style.NORMAL, errors="default"))


def slugify(name: str) -> str:
    """The slug a name gets before collisions are considered. Never empty."""
    parts = []
    for word in _words(name.strip()):
        ascii_word = unicodedata.normalize("NFKD", _romanize(word))
        ascii_word = ascii_word.encode("ascii", "ignore").decode().lower()
        cleaned = _NON_SLUG.sub("-", ascii_word).strip("-")
        if cleaned:
            parts.append(cleaned)
    slug = "-".join(parts)
    return slug or "x-" + _short_hash(name)


def _short_hash(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]


class KnownSlugs:
    """slugify's answers for names met before (`known`), and those worked out since
    (`added`, to be kept). jieba and pypinyin are slow and large to load: with
    every name known, no command loads them. A kept slug also stays the same if a later
    jieba would segment the name differently, so published URLs do not move."""

    def __init__(
        self,
        known: Mapping[str, str] | None = None,
        *,
        load: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        # With `load`, the known slugs are read when a name first needs one (a config
        # whose names are all pinned reads none).
        self._known: dict[str, str] | None = dict(known or {}) if load is None else None
        self._load = load
        self.added: dict[str, str] = {}

    @property
    def known(self) -> dict[str, str]:
        if self._known is None:
            assert self._load is not None
            self._known = dict(self._load())
        return self._known

    def slugify(self, name: str) -> str:
        slug = self.known.get(name)
        if slug is None:
            slug = self.known[name] = self.added[name] = slugify(name)
        return slug


def assign_slugs(
    names: Iterable[str],
    pinned: Mapping[str, str] | None = None,
    known: KnownSlugs | None = None,
) -> dict[str, str]:
    """Give every name a unique slug, deterministically.

    Pinned slugs (from the config) always win. Names whose slug would collide
    all get a suffix made from their own hash, so the result does not depend on
    the order the names came in. `known` saves working out a name's slug again.
    """
    slug_of = known.slugify if known else slugify
    pinned = dict(pinned or {})
    result: dict[str, str] = {}
    taken = set(pinned.values())
    by_slug: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        if name in pinned:
            result[name] = pinned[name]
            continue
        by_slug.setdefault(slug_of(name), []).append(name)
    for slug, group in sorted(by_slug.items()):
        if len(group) == 1 and slug not in taken:
            result[group[0]] = slug
            continue
        for name in group:
            result[name] = f"{slug}-{_short_hash(name)}"
    return result
