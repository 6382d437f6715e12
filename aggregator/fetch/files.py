"""file: URLs read as if they were served, validators included."""

from __future__ import annotations

import email.utils
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aggregator.errors import FetchError
from aggregator.fetch.request import Limits
from aggregator.models import FetchResult


def _file_validators(path: Path) -> tuple[str, str]:
    stat = path.stat()
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    return etag, last_modified


def fetch_file(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limits: Limits | None = None,
) -> FetchResult:
    """Read a file: URL as if it were served, validators included, so the
    sample sources behave like real ones (a second poll answers 304)."""
    limits = limits or Limits()
    parts = urlsplit(url)
    path = Path(unquote(parts.path))
    try:
        current_etag, current_modified = _file_validators(path)
        if etag and etag == current_etag:
            return FetchResult(url, 304, None, etag=current_etag, last_modified=current_modified)
        if path.stat().st_size > limits.max_body_bytes:
            raise FetchError(f"file is over the {limits.max_body_bytes} byte cap")
        body = path.read_bytes()
    except FileNotFoundError:
        raise FetchError(f"no such file: {path}", status=404) from None
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
    return FetchResult(url, 200, body, etag=current_etag, last_modified=current_modified)
