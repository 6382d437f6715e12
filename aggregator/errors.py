"""Every error the package raises on purpose derives from AggregatorError."""

from __future__ import annotations

from dataclasses import dataclass


class AggregatorError(Exception):
    """Base class of the package's own errors."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    file: str
    line: int | None
    key: str
    message: str
    source_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" (source {self.source_id!r})" if self.source_id else ""
        return f"{where}: {self.key}{who}: {self.message}"


class ConfigError(AggregatorError):
    """The config file cannot be used. Carries every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigNotFound(ConfigError):
    """There is no config file where one was looked for."""

    def __init__(self, path: str, looked_for: str, relative_to: str | None) -> None:
        self.path = path
        where = f", relative to the current folder {relative_to}" if relative_to else ""
        self.where = f"looked for {looked_for}{where}"
        super().__init__([ConfigProblem(path, None, "(file)", f"no such file ({self.where})")])


class StartError(AggregatorError):
    """The daemon cannot start: its address is taken, say. The message says what to do."""


class SourceError(AggregatorError):
    """Something went wrong with one source; carries its id."""

    def __init__(self, source_id: str, message: str) -> None:
        self.source_id = source_id
        self.message = message
        super().__init__(f"source {source_id!r}: {message}")


class FetchError(AggregatorError):
    """A fetch failed. status is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.gone = gone
        self.seconds = 0.0  # how long the failed fetch took (set by the Fetcher)
        super().__init__(message)


class ParseError(AggregatorError):
    """The body is not a feed we can read."""


class StoreError(AggregatorError):
    """The database cannot be used (locked by another daemon, too new a schema, ...)."""


class BatchFailed(StoreError):
    """A transaction inside a Storage.batch failed, so the whole batch was rolled back."""
