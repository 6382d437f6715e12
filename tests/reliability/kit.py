"""Parts shared by the reliability harnesses (crash, soak, server load).

A World of sources whose articles change while they are polled, served over
real HTTP on 127.0.0.1 (tests/feedserver.py) by a handler that also notices
two requests for one feed in flight at once; the daemon as a real process
(`python -m aggregator run`); and readings of its database and output.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

from tests.conftest import config_text
from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parent.parent.parent
SHARE = "http://finews.example.cn/html_News/NewsShare.html?infoCode="
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CATEGORIES = ("要闻", "交通", "财经", "体育")
TAGS = ("三秦都市报新闻", "宝鸡", "西安", "民生", "科技")
EN_CATEGORIES = ("news", "traffic", "business", "sports")
EN_TAGS = ("sanqin", "baoji", "xian", "people", "tech")
FILLER = "今年以来，全市各级公安交警部门牢固树立安全发展理念，扎实开展交通事故预防工作。"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the world: sources and their changing articles ---------------------------------


@dataclass
class Article:
    code: str
    version: int
    published: datetime
    paragraphs: int

    @property
    def title(self) -> str:
        return f"{self.code} 凝神聚力保畅通 第{self.version}版"

    @property
    def updated(self) -> datetime:
        # Each edit moves the date forward, as a publisher's <updated> does.
        return self.published + timedelta(minutes=self.version)

    def body(self) -> str:
        paragraph = f"<p>{FILLER}（{self.code} v{self.version}）</p>"
        return paragraph * self.paragraphs


@dataclass
class Outlet:
    """One source: the articles it lists (newest first) and how it answers."""

    id: str
    fmt: str  # "atom" or "rss"
    category: str
    tags: tuple[str, ...]
    interval: float
    codes: list[str] = field(default_factory=list)
    mode: str = "ok"  # "ok", "error" (500), "throttle" (429), "garbage" (an HTML page)

    @property
    def path(self) -> str:
        return f"/feeds/{self.id}.xml"


class World:
    """Every source's articles. Thread-safe; the HTTP handler renders from it."""

    def __init__(self, rng: random.Random, paragraphs: int = 3, window: int | None = None) -> None:
        self.rng = rng
        self.paragraphs = paragraphs
        self.window = window  # a source lists only its newest `window` articles
        self.articles: dict[str, Article] = {}
        self.outlets: dict[str, Outlet] = {}
        self.lock = threading.RLock()
        self._next = 1
        self._cache: dict[str, tuple[tuple[object, ...], bytes, list[tuple[str, int]]]] = {}

    def add_outlet(self, outlet: Outlet) -> None:
        with self.lock:
            self.outlets[outlet.id] = outlet

    def new_article(self) -> Article:
        with self.lock:
            number = self._next
            self._next += 1
            article = Article(
                f"NW{20250101000000 + number:020d}",
                1,
                EPOCH + timedelta(hours=number),
                self.rng.randint(1, self.paragraphs),
            )
            self.articles[article.code] = article
            return article

    def publish(self, outlet_id: str, count: int = 1) -> list[str]:
        """New articles at the top of one source's feed."""
        with self.lock:
            codes = [self.new_article().code for _ in range(count)]
            self.outlets[outlet_id].codes[:0] = list(reversed(codes))
            return codes

    def share(self, code: str, outlet_id: str) -> None:
        """Another source carries an existing article (the same copy): dedup material."""
        with self.lock:
            codes = self.outlets[outlet_id].codes
            if code not in codes:
                codes.insert(0, code)

    def edit(self, code: str) -> None:
        with self.lock:
            self.articles[code].version += 1

    def remove(self, outlet_id: str, code: str) -> None:
        with self.lock:
            codes = self.outlets[outlet_id].codes
            if code in codes:
                codes.remove(code)

    def listed(self, outlet: Outlet) -> list[str]:
        return outlet.codes[: self.window] if self.window else list(outlet.codes)

    def render(self, outlet_id: str) -> tuple[bytes, list[tuple[str, int]]]:
        """The feed as it is now, and the (code, version) pairs it lists."""
        with self.lock:
            outlet = self.outlets[outlet_id]
            listed = [(c, self.articles[c].version) for c in self.listed(outlet)]
            stamp = (outlet.fmt, tuple(listed))
            cached = self._cache.get(outlet_id)
            if cached and cached[0] == stamp:
                return cached[1], cached[2]
            articles = [self.articles[c] for c in self.listed(outlet)]
        body = render_feed(outlet, articles)
        with self.lock:
            self._cache[outlet_id] = (stamp, body, listed)
        return body, listed


def render_feed(outlet: Outlet, articles: list[Article]) -> bytes:
    if outlet.fmt == "atom":
        return _atom(outlet, articles)
    return _rss(outlet, articles)


def _rss(outlet: Outlet, articles: list[Article]) -> bytes:
    items = "".join(
        "<item>"
        f"<title>{escape(a.title)}</title><link>{SHARE}{a.code}</link>"
        f'<guid isPermaLink="false">{outlet.id}-{a.code}</guid>'
        f"<pubDate>{a.published:%a, %d %b %Y %H:%M:%S +0000}</pubDate>"
        f"<atom:updated>{a.updated.isoformat()}</atom:updated>"
        f"<description>{escape(a.body())}</description></item>"
        for a in articles
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
        f"<title>{outlet.id} 三秦都市报</title><link>http://finews.example.cn/{outlet.id}/</link>"
        f"<description>测试</description>{items}</channel></rss>"
    ).encode()


def _atom(outlet: Outlet, articles: list[Article]) -> bytes:
    entries = "".join(
        "<entry>"
        f"<title>{escape(a.title)}</title><id>tag:finews.example.cn,2025:{a.code}</id>"
        f'<link rel="alternate" href="{SHARE}{a.code}"/>'
        f"<published>{a.published.isoformat()}</published>"
        f"<updated>{a.updated.isoformat()}</updated>"
        f'<content type="html">{escape(a.body())}</content></entry>'
        for a in articles
    )
    newest = max((a.updated for a in articles), default=EPOCH)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{outlet.id} 三秦都市报</title><id>tag:finews.example.cn,2025:{outlet.id}</id>"
        f'<link rel="alternate" href="http://finews.example.cn/{outlet.id}/"/>'
        f"<updated>{newest.isoformat()}</updated>{entries}</feed>"
    ).encode()


# --- serving the world ------------------------------------------------------------------


class WorldFeeds:
    """The request handler for every source path: renders from the World, honours
    If-None-Match, plays the source's failure mode, and records what it served."""

    def __init__(self, world: World, delay: Callable[[], float] = lambda: 0.0) -> None:
        self.world = world
        self.delay = delay
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.overlaps: list[str] = []  # paths requested while a request for them was running
        self.served: dict[str, int] = {}  # code -> highest version delivered in a 200
        self.requests: dict[str, int] = {}
        self.answered: dict[str, list[tuple[float, int]]] = {}  # path -> (monotonic, status)

    def install(self, server: FeedServer) -> None:
        for outlet in self.world.outlets.values():
            server.set(outlet.path, handler=self)

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            if self.active.get(path, 0):
                self.overlaps.append(path)
            self.active[path] = self.active.get(path, 0) + 1
        try:
            pause = self.delay()
            if pause:
                time.sleep(pause)
            status = self._answer(handler, path)
            with self.lock:
                self.answered.setdefault(path, []).append((time.monotonic(), status))
        except OSError:
            pass  # the client went away (a killed daemon)
        finally:
            with self.lock:
                self.active[path] -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, path: str) -> int:
        outlet_id = path.rsplit("/", 1)[-1].removesuffix(".xml")
        mode = self.world.outlets[outlet_id].mode
        if mode == "error":
            return _send(handler, 500, {"Content-Type": "text/plain"}, b"internal error")
        if mode == "throttle":
            headers = {"Content-Type": "text/plain", "Retry-After": "2"}
            return _send(handler, 429, headers, b"slow down")
        if mode == "garbage":
            headers = {"Content-Type": "text/html; charset=utf-8"}
            _send(handler, 200, headers, b"<html><body>maintenance</body></html>")
            return 0  # recorded as no answer: the daemon cannot use it
        body, listed = self.world.render(outlet_id)
        etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
        if handler.headers.get("If-None-Match") == etag:
            return _send(handler, 304, {"ETag": etag}, b"")
        content_type = "application/atom+xml" if body.find(b"<feed") >= 0 else "application/rss+xml"
        _send(handler, 200, {"Content-Type": content_type + "; charset=utf-8", "ETag": etag}, body)
        with self.lock:  # delivered: the daemon has these versions now
            for code, version in listed:
                self.served[code] = max(self.served.get(code, 0), version)
        return 200

    def last_answer(self, path: str) -> tuple[float, int] | None:
        with self.lock:
            answers = self.answered.get(path)
            return answers[-1] if answers else None


def _send(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
) -> int:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if body:
        handler.wfile.write(body)
    return status


def serve(server: FeedServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


# --- the daemon as a process -----------------------------------------------------------


def write_config(
    folder: Path, outlets: Iterable[Outlet], base: str, port: int, **settings: Any
) -> Path:
    sources = [
        {
            "id": o.id,
            "name": f"{o.id} 三秦都市报",
            "url": base + o.path,
            "category": o.category,
            "tags": list(o.tags),
            "interval": o.interval,
            "allow_private": True,
            "share_code": {"param": "infoCode"},
        }
        for o in outlets
    ]
    values: dict[str, Any] = {
        "database": str(folder / "data" / "aggregator.db"),
        "output_dir": str(folder / "feeds"),
        "base_url": "http://feeds.example.org",
        "port": port,
        "publish_delay": 0.2,
        "stop_timeout": 10,
        **settings,
    }
    path = folder / "sources.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(sources, **values), encoding="utf-8")
    return path


class DaemonProcess:
    """`python -m aggregator run` in a child process, its log in a file (or another
    command: `command`)."""

    def __init__(
        self, config: Path, port: int, log: Path, command: tuple[str, ...] = ("run",)
    ) -> None:
        self.config = config
        self.port = port
        self.log_path = log
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aggregator",
                "--log-level",
                "warning",
                *self.command,
                "--config",
                str(self.config),
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
            # faulthandler: SIGABRT makes it write every thread's stack to the log.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
        )

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the daemon exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the daemon never became healthy; see {self.log_path}")

    def kill(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        """The exit code. A process still running after `timeout` seconds is aborted
        (SIGABRT): the error raised shows the end of its log, its threads' stacks."""
        assert self.process
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(30)
            self.close_log()
            tail = self.log_path.read_bytes()[-20_000:].decode("utf-8", "replace")
            raise RuntimeError(
                f"{' '.join(self.command)} still running after {timeout}s; aborted. "
                f"The end of {self.log_path}:\n{tail}"
            ) from None
        self.close_log()
        return code

    def close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))


# --- reading the store ----------------------------------------------------------------


@contextmanager
def connect(database: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived reading connection, closed on leaving (sqlite3's own `with` only commits)."""
    conn = sqlite3.connect(database, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def integrity(database: Path) -> str:
    with connect(database) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def stored_codes(database: Path) -> list[str]:
    """Every share code in the store, duplicates kept (there must be none)."""
    if not database.exists():
        return []
    with connect(database) as conn:
        return [code for (code,) in conn.execute("SELECT code FROM entries")]


def stored_links(database: Path) -> set[tuple[str, str]]:
    """(code, source) pairs: which source carried which entry."""
    if not database.exists():
        return set()
    with connect(database) as conn:
        return {(c, s) for c, s in conn.execute("SELECT code, source_id FROM entry_sources")}


def stored_titles(database: Path) -> dict[str, str]:
    with connect(database) as conn:
        return dict(conn.execute("SELECT code, title FROM entries").fetchall())


def store_fingerprint(database: Path) -> dict[str, Any]:
    """What the store says about each entry, leaving out what depends on when and in
    which order it arrived (first_seen/last_seen, feed positions, the first carrier)."""
    with connect(database) as conn:
        entries = {
            row[0]: row[1:]
            for row in conn.execute(
                """SELECT code, title, link, published, updated, author, summary, content,
                          categories, enclosures FROM entries"""
            )
        }
        carriers: dict[str, list[tuple[str, str]]] = {}
        for code, source, hashed in conn.execute(
            "SELECT code, source_id, entry_hash FROM entry_sources ORDER BY code, source_id"
        ):
            carriers.setdefault(code, []).append((source, hashed))
        terms: dict[str, list[str]] = {}
        for table in ("entry_categories", "entry_tags"):
            for code, name in conn.execute(f"SELECT code, name FROM {table} ORDER BY code, name"):
                terms.setdefault(code, []).append(f"{table}:{name}")
    return {"entries": entries, "carriers": carriers, "terms": terms}


def positions_are_contiguous(database: Path) -> list[str]:
    """Problems with feed positions: each feed numbers its entries 0..n-1, once each."""
    found = []
    with connect(database) as conn:
        feeds = conn.execute(
            "SELECT kind, name, count(*), count(DISTINCT code), min(seq), max(seq) "
            "FROM feed_positions GROUP BY kind, name"
        ).fetchall()
    for kind, name, count, distinct, low, high in feeds:
        if count != distinct or low != 0 or high != count - 1:
            found.append(f"{kind}/{name}: {count} positions, {distinct} codes, {low}..{high}")
    return found


def files_of(folder: Path) -> dict[str, bytes]:
    """Every published file (dot files, i.e. temp files, left out) by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp") if p.is_file()]


def dump_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
