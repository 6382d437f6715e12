"""Poll one source: fetch, parse, identify entries, store, decide the next poll.

This is the pipeline for a single source, with I/O at the edges (fetcher,
store) and decisions made by the pure modules. A failing source records its
error and never raises into the caller, so one bad source stops nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aggregator.config.loader import Source
from aggregator.errors import FetchError, ParseError
from aggregator.fetch.fetcher import Fetcher
from aggregator.fetch.request import FetchRequest
from aggregator.identity.identify import GUID, fingerprint, identify
from aggregator.identity.rules import filter_and_classify
from aggregator.models import EntryRecord, FetchResult, ParsedFeed, evolve
from aggregator.parse.kinds import parse_source, request_body, request_headers, request_url
from aggregator.parse.limits import ParseLimits
from aggregator.run.pacing import PollFacts, next_poll_at, retry_window_end
from aggregator.store.interface import Storage
from aggregator.store.records import FeedKey, IngestResult, PollRecord, SourceState

# Full text is loaded by the polls of the sources that want it (full_text_for): its
# article reader is much of what a poll would otherwise import before fetching anything.
if TYPE_CHECKING:
    from aggregator.run.fulltext import FullText

log = logging.getLogger("aggregator.poll")

Clock = Callable[[], datetime]
# Stores a poll's outcome for a source: Storage.record_poll by default, or a
# batch that commits many polls together (pollrun.PollRecords).
RecordPoll = Callable[[str, PollRecord], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PollOutcome:
    source_id: str
    result: str  # "ok", "not_modified", "unchanged", "error", "gone"
    new: int = 0
    updated: int = 0
    added_source: int = 0
    unchanged: int = 0  # entries read again and found the same
    error: str = ""
    error_count: int = 0  # failures in a row, this one included
    http_status: int | None = None
    next_poll: datetime | None = None
    changed_feeds: set[FeedKey] = field(default_factory=set)
    seconds: float = 0.0
    moved_to: str | None = None  # the URL a permanent redirect led to, this poll

    @property
    def failed(self) -> bool:
        return self.result in ("error", "gone")

    def describe(self) -> str:
        """What the poll did, in the words both `aggregator poll` and the daemon's log use."""
        if self.result == "ok":
            text = (
                f"{self.new} new, {self.updated} updated, "
                f"{self.added_source} already stored from other sources, "
                f"{self.unchanged} unchanged"
            )
        elif self.result == "gone":
            text = f"gone, no longer polled: {self.error}"
        elif self.result == "error":
            text = f"failed ({self.error_count} in a row): {self.error}"
        else:
            text = self.result.replace("_", " ")
        return f"{text}; moved permanently to {self.moved_to}" if self.moved_to else text


def source_salt(source: Source, limits: ParseLimits | None) -> bytes:
    """What, besides an entry's bytes, shapes what is stored of it: the source's whole
    config (share-code rule, rules, filters, zone...) and the field limits. Any change
    there makes every stored raw digest of the source stale, so entries are read again."""
    return repr((source, (limits or ParseLimits()).fields)).encode("utf-8")


def salted(digest: str, salt: bytes) -> str:
    """A raw entry digest as stored for one source; "" stays "" (nothing to skip by)."""
    return hashlib.sha1(salt + digest.encode("ascii")).hexdigest() if digest else ""


@dataclass
class KnownEntries:
    """The `known` test given to the parser: is this raw entry stored, byte for byte?

    The parser asks once per entry, in document order, so the answers also tell where
    the skipped entries stood among the ones read."""

    codes: dict[str, str]  # salted raw digest -> stored code
    salt: bytes
    answers: list[str | None] = field(default_factory=list)  # skipped: its code

    def __call__(self, digest: str) -> bool:
        code = self.codes.get(salted(digest, self.salt))
        self.answers.append(code)
        return code is not None

    def first_copies(self, read: Sequence[EntryRecord]) -> list[EntryRecord]:
        """The entries read, minus those whose article an entry skipped before them
        already carries: the first copy in the document wins, skipped or not."""
        entries = iter(read)
        seen: set[str] = set()
        kept = []
        for code in self.answers:
            if code is not None:
                seen.add(code)
                continue
            entry = next(entries)
            if entry.code not in seen:
                seen.add(entry.code)
                kept.append(entry)
        return kept


def with_identities(
    entries: Iterable[EntryRecord], source: Source, salt: bytes = b""
) -> list[EntryRecord]:
    """Each entry with its identity (code, rule, legacy code; a fingerprint when it is
    known by its guid) and its raw digest salted for the source."""
    coded = []
    for entry in entries:
        found = identify(entry, source.share_code, source.id)
        coded.append(
            evolve(
                entry,
                code=found.code,
                code_rule=found.rule,
                legacy_code=found.legacy,
                fingerprint=fingerprint(entry) if found.rule == GUID else "",
                raw_digest=salted(entry.raw_digest, salt),
            )
        )
    return coded


def extract(
    source: Source,
    body: bytes,
    url: str,
    content_type: str,
    now: datetime,
    limits: ParseLimits | None = None,
    known_digests: dict[str, str] | None = None,
) -> ParsedFeed:
    """Parse (under the time and memory limits) and give every entry its identity;
    no storing. Entries whose salted raw digest is in known_digests (digest -> code)
    are left out unread: the store has them byte for byte."""
    salt = source_salt(source, limits)
    known = KnownEntries(known_digests, salt) if known_digests else None
    feed = parse_source(
        source, body, url=url, content_type=content_type, seen_at=now, limits=limits, known=known
    )
    entries = with_identities(feed.entries, source, salt)
    if known is not None and feed.skipped:  # the fast path read it all: answers are exact
        entries = known.first_copies(entries)
    return replace(feed, entries=tuple(entries))


def parse_and_store(
    source: Source,
    store: Storage,
    body: bytes,
    url: str,
    content_type: str,
    now: datetime,
    limits: ParseLimits | None = None,
    stored_at: datetime | None = None,
) -> tuple[ParsedFeed, IngestResult]:
    """A fetched body into the store: parse, identities, the source's rules, ingest
    (which never brings back a tombstoned code). Raises ParseError."""
    feed, entries = parse_for_store(source, store, body, url, content_type, now, limits)
    return feed, ingest_parsed(store, source, feed, entries, stored_at or now)


def parse_for_store(
    source: Source,
    store: Storage,
    body: bytes,
    url: str,
    content_type: str,
    now: datetime,
    limits: ParseLimits | None = None,
    *,
    parsed_before: bool = True,
) -> tuple[ParsedFeed, list[EntryRecord]]:
    """Parse a fetched body, leaving out the entries the store has byte for byte, and
    apply the source's rules: the entries ingest_parsed stores. Raises ParseError.
    A source never parsed before has no digests stored: the store is not asked."""
    known = store.known_digests(source.id) if parsed_before else None
    feed = extract(source, body, url, content_type, now, limits, known)
    return feed, filter_and_classify(feed.entries, source)


def ingest_parsed(
    store: Storage,
    source: Source,
    feed: ParsedFeed,
    entries: list[EntryRecord],
    stored_at: datetime,
) -> IngestResult:
    """One store transaction for parse_for_store's entries; the entries it left out
    count as unchanged."""
    ingested = store.ingest(source, feed, entries, stored_at)
    ingested.unchanged += feed.skipped
    return ingested


def hints_json(feed: ParsedFeed) -> str:
    """The feed's own polling hints, stored so a later 304 still honours them."""
    return json.dumps(
        {
            "ttl_minutes": feed.ttl_minutes,
            "update_period": feed.update_period,
            "skip_hours": list(feed.skip_hours),
            "skip_days": list(feed.skip_days),
        }
    )


def with_hints(facts: PollFacts, hints: str | None) -> PollFacts:
    fields = _hint_fields(hints or "")
    if fields is None:
        return facts
    ttl_minutes, update_period, skip_hours, skip_days = fields
    return replace(
        facts,
        ttl_minutes=ttl_minutes,
        update_period=update_period,
        skip_hours=skip_hours,
        skip_days=skip_days,
    )


@functools.lru_cache(maxsize=1024)
def _hint_fields(hints: str) -> tuple[Any, Any, frozenset[int], frozenset[int]] | None:
    """Stored hints (hints_json) as PollFacts fields; None when not a JSON object.
    Cached: every poll reads them, and most feeds send the same few."""
    try:
        values = json.loads(hints) if hints else {}
    except ValueError:
        values = {}
    if not isinstance(values, dict):
        return None
    return (
        values.get("ttl_minutes"),
        values.get("update_period"),
        frozenset(values.get("skip_hours") or ()),
        frozenset(values.get("skip_days") or ()),
    )


@dataclass
class ReadyToStore:
    """A poll fetched and parsed, its entries ready for the store: the first half of a
    poll (after_fetch), which a worker process hands to the process that writes
    (store_parsed). Plain data, so it can be pickled."""

    source: Source
    state: SourceState
    feed: ParsedFeed  # without its entries: `entries` holds them, prepared
    entries: list[EntryRecord]
    validators: PollRecord  # the validators, body hash and hints to record
    facts: PollFacts
    started: datetime
    stored_at: datetime  # when the parse ended: the entries' time, and the poll's end
    rand: float
    status: int
    fetch_seconds: float = 0.0


@dataclass(frozen=True)
class PollStart:
    """A poll about to fetch: its source and stored state, when it began, and the
    request that state allows (conditional, to where the feed moved)."""

    source: Source
    state: SourceState
    started: datetime
    request: FetchRequest


def source_request(
    source: Source,
    now: datetime,
    moved_to: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchRequest:
    """How to ask a source for its entries: its kind's headers, its method, query
    parameters and body (a permanent redirect's target already carries the query)."""
    return FetchRequest(
        moved_to or request_url(source),
        etag=etag,
        last_modified=last_modified,
        headers=request_headers(source),
        allow_private=source.allow_private,
        now=now,
        body=request_body(source),
    )


def begin_poll(source: Source, state: SourceState, started: datetime) -> PollStart:
    request = source_request(
        source, started, state.moved_to, etag=state.etag, last_modified=state.last_modified
    )
    return PollStart(source, state, started, request)


def fetch_request(fetcher: Fetcher, request: FetchRequest) -> FetchResult:
    """Fetcher.fetch of a FetchRequest. Raises FetchError."""
    return fetcher.fetch(
        request.url,
        etag=request.etag,
        last_modified=request.last_modified,
        headers=request.headers,
        allow_private=request.allow_private,
        now=request.now,
        body=request.body,
        untrusted=request.untrusted,
    )


def poll_source(
    source: Source,
    store: Storage,
    fetcher: Fetcher,
    *,
    clock: Clock = utc_now,
    rand: Callable[[], float] = random.random,
    limits: ParseLimits | None = None,
) -> PollOutcome:
    """Poll one source end to end, its state stored at once (the daemon's way; the
    `aggregator poll` command drives the same steps, begin_poll and finish_poll,
    around Fetcher.fetch_many). Never raises for the source's own failures: a failed
    fetch or parse stores nothing but the error, and the entries stay as they were."""
    start = begin_poll(source, store.source_state(source.id), clock())
    request = start.request
    full_text = full_text_for(fetcher, store, limits) if source.full_text.enabled else None
    with fetcher.holding():  # the body counts against the fetcher's budget until stored
        try:
            fetched: FetchResult | FetchError = fetch_request(fetcher, request)
        except FetchError as exc:
            fetched = exc
        return finish_poll(
            start,
            fetched,
            store,
            record=store.record_poll,
            clock=clock,
            rand=rand,
            limits=limits,
            full_text=full_text,
        )


def finish_poll(
    start: PollStart,
    fetched: FetchResult | FetchError,
    store: Storage,
    *,
    record: RecordPoll,
    clock: Clock = utc_now,
    rand: Callable[[], float] = random.random,
    limits: ParseLimits | None = None,
    full_text: FullText | None = None,
) -> PollOutcome:
    """A poll once its fetch is done: read, its articles fetched when the source wants
    full text (with `full_text`), stored, its state recorded with `record`."""
    step = after_fetch(start, fetched, store, record=record, clock=clock, rand=rand, limits=limits)
    if isinstance(step, PollOutcome):
        return step
    if full_text is not None:
        step = with_full_text(step, full_text)
    return store_parsed(step, store, record)


def full_text_for(fetcher: Fetcher, store: Storage, limits: ParseLimits | None) -> FullText:
    """What fetches the articles of the entries of sources with full_text."""
    from aggregator.run.fulltext import FullText

    return FullText(fetcher, limits or ParseLimits(), stored=store.articles_by_code)


def with_full_text(parsed: ReadyToStore, full_text: FullText) -> ReadyToStore:
    """A parsed poll's entries with their articles, for a source with full_text."""
    if not parsed.source.full_text.enabled:
        return parsed
    return replace(parsed, entries=full_text.apply(parsed.entries, parsed.source))


def after_fetch(
    start: PollStart,
    fetched: FetchResult | FetchError,
    store: Storage,
    *,
    record: RecordPoll,
    clock: Clock = utc_now,
    rand: Callable[[], float] = random.random,
    limits: ParseLimits | None = None,
) -> PollOutcome | ReadyToStore:
    """The first half of a poll once its fetch is done, which writes nothing but poll
    states: a 304, the same bytes again or a failure end the poll here (their state
    stored with `record`); new bytes are parsed into a ReadyToStore for store_parsed. A
    worker process stops here and hands the ReadyToStore to the process that writes."""
    source, state, started = start.source, start.state, start.started
    # Each way out reads the clock once as the poll ends: the next one counts from there.
    if isinstance(fetched, FetchError):
        return _failed(
            source, record, state, fetched, started, clock(), rand(), seconds=fetched.seconds
        )
    validators = PollRecord(
        etag=fetched.etag or state.etag,
        last_modified=fetched.last_modified or state.last_modified,
    )
    if fetched.moved_to:
        validators = validators._replace(moved_to=fetched.moved_to)
    facts = with_hints(
        PollFacts(source.interval, succeeded=True, max_age=fetched.max_age), state.poll_hints
    )
    seconds = fetched.seconds
    if fetched.body is None:
        return _succeeded(
            source,
            record,
            "not_modified",
            validators,
            facts,
            started,
            clock(),
            rand(),
            304,
            seconds,
        )
    body_hash = hashlib.sha1(fetched.body).hexdigest()
    if body_hash == state.body_hash:
        # Same bytes as last time although the server sent no validators.
        return _succeeded(
            source,
            record,
            "unchanged",
            validators,
            facts,
            started,
            clock(),
            rand(),
            fetched.status,
            seconds,
        )
    try:
        feed, entries = parse_for_store(
            source,
            store,
            fetched.body,
            fetched.url,
            fetched.content_type,
            started,
            limits,
            parsed_before=state.body_hash is not None,  # set by every parse that stored
        )
    except ParseError as exc:
        return _failed(
            source,
            record,
            state,
            exc,
            started,
            clock(),
            rand(),
            fetched.status,
            fetched.moved_to,
            seconds=seconds,
        )
    except Exception as exc:  # a bug must not stop other sources
        return _internal_error(
            source, record, state, exc, started, clock(), rand(), fetched.status, seconds
        )
    hints = hints_json(feed)
    return ReadyToStore(
        source,
        state,
        replace(feed, entries=()),
        entries,
        validators._replace(body_hash=body_hash, poll_hints=hints),
        with_hints(facts, hints),
        started,
        clock(),
        rand(),
        fetched.status,
        seconds,
    )


def store_parsed(parsed: ReadyToStore, store: Storage, record: RecordPoll) -> PollOutcome:
    """The second half of a poll: the parsed entries into the store in one transaction,
    then the poll's state."""
    source = parsed.source
    try:
        ingested = ingest_parsed(store, source, parsed.feed, parsed.entries, parsed.stored_at)
    except Exception as exc:  # a storage fault must not stop other sources
        return _internal_error(
            source,
            record,
            parsed.state,
            exc,
            parsed.started,
            parsed.stored_at,
            parsed.rand,
            parsed.status,
            parsed.fetch_seconds,
        )
    outcome = _succeeded(
        source,
        record,
        "ok",
        parsed.validators,
        parsed.facts,
        parsed.started,
        parsed.stored_at,
        parsed.rand,
        parsed.status,
        parsed.fetch_seconds,
    )
    outcome.new, outcome.updated = ingested.new, ingested.updated
    outcome.added_source, outcome.unchanged = ingested.added_source, ingested.unchanged
    outcome.changed_feeds = ingested.changed_feeds
    return outcome


def _internal_error(
    source: Source,
    record: RecordPoll,
    state: SourceState,
    exc: Exception,
    started: datetime,
    ended: datetime,
    rand: float,
    status: int,
    seconds: float,
) -> PollOutcome:
    log.exception("source %s: unexpected error", source.id, exc_info=exc)
    internal = ParseError(f"internal error {type(exc).__name__}: {exc}")
    return _failed(source, record, state, internal, started, ended, rand, status, seconds=seconds)


def _succeeded(
    source: Source,
    record: RecordPoll,
    result: str,
    validators: PollRecord,
    facts: PollFacts,
    started: datetime,
    ended: datetime,
    rand: float,
    status: int,
    seconds: float,
) -> PollOutcome:
    when = next_poll_at(ended, facts, rand)
    record(
        source.id,
        PollRecord(
            last_poll_at=started,
            last_success_at=ended,
            last_result=result,
            last_http_status=status,
            last_fetch_seconds=seconds,
            error_count=0,
            next_poll_at=when,
            retry_not_before=None,
            etag=validators.etag,
            last_modified=validators.last_modified,
            body_hash=validators.body_hash,
            moved_to=validators.moved_to,
            poll_hints=validators.poll_hints,
        ),
    )
    return PollOutcome(
        source.id,
        result,
        http_status=status,
        next_poll=when,
        moved_to=validators.changes().get("moved_to"),
        seconds=seconds,
    )


def _failed(
    source: Source,
    record: RecordPoll,
    state: SourceState,
    exc: FetchError | ParseError,
    started: datetime,
    ended: datetime,
    rand: float,
    status: int | None = None,
    moved_to: str | None = None,
    *,
    seconds: float,
) -> PollOutcome:
    """A failed poll's state: backoff (and any Retry-After window) from when it ended."""
    status = exc.status if isinstance(exc, FetchError) else status
    retry_after = exc.retry_after if isinstance(exc, FetchError) else None
    gone = isinstance(exc, FetchError) and exc.gone
    message = str(exc) if isinstance(exc, FetchError) else f"not a usable feed: {exc}"
    errors = state.error_count + 1
    facts = PollFacts(source.interval, succeeded=False, error_count=errors, retry_after=retry_after)
    when = next_poll_at(ended, with_hints(facts, state.poll_hints), rand)
    failure = PollRecord(
        last_poll_at=started,
        last_result="gone" if gone else "error",
        last_http_status=status,
        last_fetch_seconds=seconds,
        last_error=message,
        last_error_at=ended,
        error_count=errors,
        next_poll_at=when,
        retry_not_before=retry_window_end(ended, retry_after),
    )
    if moved_to:
        failure = failure._replace(moved_to=moved_to)
    if gone:
        failure = failure._replace(disabled_reason=f"410 Gone at {ended:%Y-%m-%d %H:%M} UTC")
    record(source.id, failure)
    return PollOutcome(
        source.id,
        "gone" if gone else "error",
        error=message,
        error_count=errors,
        http_status=status,
        next_poll=when,
        moved_to=moved_to,
        seconds=seconds,
    )
