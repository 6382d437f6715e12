"""The output formats: one registration each, in the order people are shown them.

A format is one module (aggregator.publish.atom, .jsonfeed, .rss) holding its
OutputFormat: file suffix, media type, renderers of a document and of entry
fragments, render cache key. The publisher, the listings and the server know the
formats only through this registry; the `formats` setting picks which are published.
"""

from __future__ import annotations

from aggregator.config.loader import Config
from aggregator.errors import ConfigError, ConfigProblem
from aggregator.publish.atom import ATOM
from aggregator.publish.documents import OutputFormat
from aggregator.publish.jsonfeed import JSON_FEED
from aggregator.publish.rss import RSS

REGISTERED: dict[str, OutputFormat] = {f.name: f for f in (ATOM, JSON_FEED, RSS)}


def chosen(config: Config) -> tuple[OutputFormat, ...]:
    """The formats the config publishes, in its order (the first is the one feeds.opml
    points at); a ConfigError naming the file and the key for a word not registered."""
    names = config.settings.formats
    unknown = [name for name in names if name not in REGISTERED]
    if unknown:
        known = ", ".join(REGISTERED)
        problems = [
            ConfigProblem(
                str(config.path),
                None,
                "settings.formats",
                f"unknown format {name!r} (known: {known})",
            )
            for name in unknown
        ]
        raise ConfigError(problems)
    return tuple(REGISTERED[name] for name in names)
