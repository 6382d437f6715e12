"""How much one parse may take: field lengths, entries, time and memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from aggregator.config.loader import Settings, limits_of

MIB = 1024 * 1024
MAX_TITLE = 1000
MAX_CONTENT = 1_000_000
MAX_SUMMARY = 100_000
MAX_ENTRIES = 2000
MAX_GUID = 2000
MAX_NAME = 200


@dataclass(frozen=True)
class FieldLimits:
    """How long stored fields may be, and how many entries one poll takes."""

    title: int = MAX_TITLE
    summary: int = MAX_SUMMARY
    content: int = MAX_CONTENT
    entries: int = MAX_ENTRIES


@dataclass(frozen=True)
class ParseLimits:
    """Limits on one parse; see the [settings] keys of the same names."""

    fields: FieldLimits = field(default_factory=FieldLimits)
    timeout: float = 60.0  # seconds of wall-clock time for one parse in a worker
    memory: int = 512 * MIB  # bytes a worker may allocate beyond its start-up size
    inline_max_bytes: int = 128 * 1024  # larger documents always go to a worker

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseLimits:
        fields = FieldLimits(**limits_of(settings, "fields"))
        return cls(fields=fields, **limits_of(settings, "parse"))
