"""Node's rss-parser for tests: tests/js/, its version pinned by package-lock.json.

`npm ci` installs it into tests/js/node_modules (git-ignored) once, when the lock file
is newer than the install; that is the only network the tests use, from the npm
registry. Tests that need it skip with the reason when node or the install is not to
be had, and fail instead under AGGREGATOR_REQUIRE_SERVICES=1 (as .ci/run sets).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.browser import unavailable

JS = Path(__file__).resolve().parent / "js"
MODULES = JS / "node_modules"
STAMP = MODULES / ".installed-lock"  # a copy of the lock file the install was made from
INSTALL_TIMEOUT = 600
READ_TIMEOUT = 120


def _installed() -> bool:
    lock = (JS / "package-lock.json").read_bytes()
    return STAMP.exists() and STAMP.read_bytes() == lock


def install() -> str:
    """tests/js/node_modules as package-lock.json pins it; "" when it is there, else
    what went wrong. One install at a time (pytest-xdist workers share the folder)."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    with open(JS / ".install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if _installed():
            return ""
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"npm ci in {JS} took over {INSTALL_TIMEOUT} s"
        if done.returncode != 0:
            return f"npm ci in {JS} failed: {done.stderr.strip()[-500:]}"
        STAMP.write_bytes((JS / "package-lock.json").read_bytes())
    return ""


def find_reader() -> list[str]:
    """The command that reads RSS files with rss-parser, installed if need be."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: rss-parser cannot read our RSS")
    problem = install()
    if problem:
        unavailable(f"rss-parser could not be installed: {problem}")
    return [node, str(JS / "read_feed.js")]


def read(reader: list[str], paths: list[Path]) -> list[dict[str, Any]]:
    """What rss-parser gives of each document (see tests/js/read_feed.js)."""
    done = subprocess.run(
        [*reader, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=READ_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    feeds: list[dict[str, Any]] = json.loads(done.stdout)
    return feeds
