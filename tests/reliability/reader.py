"""A subscriber's eye on the output folder, polling it while the daemon writes (and dies).

Every pass lists the published files; each new or changed file is read and
must be a whole document of its kind; a file seen once must never vanish; an
Atom document's prev-archive and current links must lead to files that exist
at that moment (walking the archive never hits a hole).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"


def check_document(relative: str, data: bytes) -> str | None:
    """Why these bytes are not a whole published document, or None."""
    try:
        if relative.endswith(".xml"):
            root = etree.fromstring(data)
            if root.tag != ATOM + "feed":
                return f"root element is {root.tag}"
        elif relative.endswith(".json"):
            if json.loads(data).get("version", "").find("jsonfeed.org") < 0:
                return "not a JSON Feed"
        elif relative.endswith(".opml"):
            etree.fromstring(data)
        elif relative.endswith(".html") and not data.rstrip().endswith(b"</html>"):
            return "HTML document cut short"
    except (etree.XMLSyntaxError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def walk_links(data: bytes, base_url: str, rels: tuple[str, ...] = ("prev-archive",)) -> list[str]:
    """Relative paths of the documents a feed's links of these kinds name.

    While the daemon writes, only prev-archive must always resolve: a page is
    written before the document linking back to it. (A brand-new feed's first
    archive pages name a current document written just after them, and a
    publish creating two pages at once links the first to the second a moment
    early: no reader can reach those pages before the current document exists.)
    """
    root = etree.fromstring(data)
    found = []
    for link in root.findall(ATOM + "link"):
        if link.get("rel") in rels:
            href = link.get("href", "")
            if href.startswith(base_url + "/"):
                target = href.removeprefix(base_url + "/")
                found.append(
                    target + "index.html" if target.endswith("/") or not target else target
                )
    return found


class OutputReader(threading.Thread):
    def __init__(self, folder: Path, base_url: str) -> None:
        super().__init__(name="output-reader", daemon=True)
        self.folder = folder
        self.base_url = base_url
        self.stopping = threading.Event()
        self.seen: set[str] = set()
        self.versions: dict[str, tuple[int, int, int]] = {}
        self.problems: list[str] = []
        self.passes = 0
        self.reads = 0

    def run(self) -> None:
        while not self.stopping.wait(0.002):
            self.sweep()

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        self.sweep()

    def _listing(self) -> set[str]:
        found = set()
        for folder, dirs, files in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if not name.startswith("."):
                    found.add(os.path.relpath(os.path.join(folder, name), self.folder))
        return found

    def sweep(self) -> None:
        present = self._listing()
        for gone in sorted(self.seen - present):
            self.problems.append(f"{gone}: vanished after it had been published")
            self.seen.discard(gone)  # reported once
        self.seen |= present
        for relative in sorted(present):
            path = self.folder / relative
            try:
                stat = path.stat()
                stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                if self.versions.get(relative) == stamp:
                    continue
                data = path.read_bytes()
            except FileNotFoundError:
                self.problems.append(f"{relative}: vanished while being read")
                continue
            self.versions[relative] = stamp
            self.reads += 1
            problem = check_document(relative, data)
            if problem:
                self.problems.append(f"{relative}: {problem}")
            elif relative.endswith(".xml"):
                for target in walk_links(data, self.base_url):
                    if not (self.folder / target).is_file():
                        self.problems.append(f"{relative}: links to missing {target}")
        self.passes += 1


ALL_RELS = ("prev-archive", "next-archive", "current", "alternate", "self")


def dangling_links(files: dict[str, bytes], base_url: str) -> list[str]:
    """At rest, every link between published documents resolves."""
    found = []
    for relative, data in sorted(files.items()):
        if relative.endswith(".xml"):
            found += [
                f"{relative}: links to missing {target}"
                for target in walk_links(data, base_url, ALL_RELS)
                if target not in files
            ]
    return found


def entry_ids(data: bytes) -> list[str]:
    return [e.findtext(ATOM + "id") or "" for e in etree.fromstring(data).iter(ATOM + "entry")]


def compare_outputs(published: dict[str, bytes], fresh: dict[str, bytes]) -> list[str]:
    """Published files against a from-scratch publish of the same store.

    The same files; every current document, index and list byte for byte; each
    archive page with the same entries. (Archive pages are written once, so an
    entry edited after its page was archived keeps its old text there, in any
    run: RFC 5005 archives are stable.)
    """
    found = []
    for relative in sorted(published.keys() ^ fresh.keys()):
        where = "only published" if relative in published else "only in a fresh publish"
        found.append(f"{relative}: {where}")
    for relative in sorted(published.keys() & fresh.keys()):
        mine, theirs = published[relative], fresh[relative]
        if relative.startswith("archive/"):
            if relative.endswith(".xml") and entry_ids(mine) != entry_ids(theirs):
                found.append(f"{relative}: other entries than a fresh publish's")
        elif mine != theirs:
            found.append(f"{relative}: differs from a fresh publish")
    return found
