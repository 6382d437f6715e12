"""Measure main-content extractors on the Chinese news article pages of tests/articles.py:
the share of the article's characters each finds, the navigation, ad and comment text it
lets in, its time per page and the memory it adds. Each extractor runs in a process of
its own (the memory figure is that process's peak RSS less the interpreter's).

    .venv/bin/python -m bench.extractors            # every candidate installed
    .venv/bin/python -m bench.extractors newspaper4k

The candidates are not all dependencies of the project: install the others to compare
(pip install newspaper4k trafilatura readability-lxml).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

CANDIDATES = ("newspaper4k", "trafilatura", "readability-lxml", "gne")
URL = "http://news.example.cn/a/1.html"
RUNS = 20


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def extractor(name: str) -> Callable[[str], str]:
    """The candidate's article text for a page's HTML, each used as its docs show."""
    if name == "newspaper4k":
        from newspaper import Article

        def newspaper_text(html: str) -> str:
            article = Article(URL, language="zh", fetch_images=False)
            article.download(input_html=html)
            article.parse()
            return str(article.text)

        return newspaper_text
    if name == "trafilatura":
        import trafilatura

        return lambda html: trafilatura.extract(html, url=URL, include_comments=False) or ""
    if name == "readability-lxml":
        import lxml.html
        from readability import Document

        def readability_text(html: str) -> str:
            summary = Document(html).summary(html_partial=True)
            return str(lxml.html.fromstring(summary).text_content())

        return readability_text
    if name == "gne":  # as aggregator stores it: its HTML, sanitized, as text
        from aggregator.parse.article import extract_article
        from aggregator.parse.sanitize import plain_text

        return lambda html: plain_text(extract_article(html.encode(), url=URL))
    raise SystemExit(f"unknown extractor {name}")


def measure(name: str) -> dict[str, object]:
    from tests.articles import ARTICLES, leaks, recall

    before = _peak_kib()
    extract = extractor(name)
    pages = []
    seconds = []
    for article in ARTICLES:
        html = article.body.decode(article.encoding)
        text = extract(html)
        runs = []
        for _ in range(RUNS):
            start = time.perf_counter()
            extract(html)
            runs.append(time.perf_counter() - start)
        seconds.append(statistics.median(runs))
        pages.append(
            {"page": article.name, "recall": recall(article, text), "leaks": leaks(article, text)}
        )
    return {
        "extractor": name,
        "pages": pages,
        "complete": sum(1 for p in pages if p["recall"] >= 0.9 and not p["leaks"]),
        "ms_per_page": 1000 * statistics.mean(seconds),
        "added_mib": (_peak_kib() - before) / 1024,
    }


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--one":
        print(json.dumps(measure(argv[1]), ensure_ascii=False))
        return
    for name in argv or CANDIDATES:
        done = subprocess.run(
            [sys.executable, "-m", "bench.extractors", "--one", name],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"{name}: not measured ({done.stderr.strip().splitlines()[-1:]})")
            continue
        result = json.loads(done.stdout)
        print(
            f"{name}: {result['complete']} of {len(result['pages'])} pages whole and clean, "
            f"{result['ms_per_page']:.1f} ms a page, +{result['added_mib']:.0f} MiB"
        )
        for page in result["pages"]:
            leaked = f", leaked {page['leaks']}" if page["leaks"] else ""
            print(f"  {page['page']}: {page['recall']:.0%} of the text{leaked}")


if __name__ == "__main__":
    main(sys.argv[1:])
