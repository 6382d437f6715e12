"""Requests per second of the built-in server beside nginx, on the same published folder.

    python -m tests.reliability.serveload [--seconds 10] [--connections 100] [--keep DIR]

Publishes a store of a few thousand articles (20 sources, 4 categories, 5
tags), then measures with wrk (Debian package `wrk`) against
aggregator.serve.server.FeedServer in its own process, and against nginx (Debian
package `nginx`, run as a child with a temp config on a loopback port): full
GETs of all.xml, gzip GETs, and revalidations with If-None-Match (304). The
load generator and the server share the machine, so the figures compare the
two servers rather than give either's ceiling.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator.config.loader import load_config
from aggregator.models import EntryRecord, ParsedFeed
from aggregator.publish.publisher import Publisher
from aggregator.store.sqlite import SqliteStore
from tests.reliability.kit import EN_CATEGORIES, EN_TAGS, FILLER, ROOT, free_port, write_config
from tests.reliability.kit import Outlet as _Outlet

NGINX_CONF = """
worker_processes {workers};
user root;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ application/atom+xml xml; application/feed+json json; text/html html; }}
    etag on;
    gzip on;
    gzip_types application/atom+xml application/feed+json;
    client_body_temp_path {folder}/tmp;
    proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp;
    uwsgi_temp_path {folder}/tmp;
    scgi_temp_path {folder}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def publish_folder(folder: Path, articles: int = 3000) -> Path:
    """A published folder like a real installation's: 20 sources, feeds of 50 entries."""
    rng = random.Random(1)
    outlets = [
        _Outlet(f"s{n:02d}", "rss", EN_CATEGORIES[n % 4], tuple(rng.sample(EN_TAGS, 2)), 1800)
        for n in range(20)
    ]
    config = load_config(write_config(folder, outlets, "http://127.0.0.1:9", free_port()), env={})
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with SqliteStore(config.settings.database) as store:
        for number in range(articles):
            source = config.sources[number % len(config.sources)]
            when = start + timedelta(minutes=7 * number)
            record = EntryRecord(
                guid=f"g{number}",
                title=f"第{number}条 凝神聚力保畅通",
                link=f"http://finews.example.cn/html_News/NewsShare.html?infoCode=NW{number}",
                published=when,
                updated=when,
                content=f"<p>{FILLER}</p>" * rng.randint(2, 8),
                code=f"NW{number}",
                code_rule="param:infoCode",
            )
            store.ingest(source, ParsedFeed("rss20", source.name, "", ""), [record], when)
        Publisher(config, store).publish()
    return config.settings.output_dir


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, Any]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests_per_second": float(rate.group(1)) if rate else 0.0,
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 2) if p99 else None,
        "non_2xx_3xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sockets.group(1) if sockets else "",
    }


def etag_of(url: str, gzip: bool = False) -> str:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:
        return str(answer.headers["ETag"])


def wait_up(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def measure(base: str, seconds: int, connections: int) -> dict[str, Any]:
    url = base + "/all.xml"
    return {
        "get": wrk(url, seconds, connections, {}),
        "get_gzip": wrk(url, seconds, connections, {"Accept-Encoding": "gzip"}),
        "revalidate_304": wrk(url, seconds, connections, {"If-None-Match": etag_of(url)}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"{tool} is missing: apt-get install {tool}", file=sys.stderr)
            return 2
    folder = args.keep or Path(tempfile.mkdtemp(prefix="serveload-"))
    folder.mkdir(parents=True, exist_ok=True)
    output = publish_folder(folder)
    size = (output / "all.xml").stat().st_size
    results: dict[str, Any] = {"all_xml_bytes": size, "connections": args.connections}
    port = free_port()
    ours = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; "
            "from aggregator.serve.server import FeedServer; "
            "FeedServer(('127.0.0.1', int(sys.argv[1])), Path(sys.argv[2])).serve_forever()",
            str(port),
            str(output),
        ],
        cwd=ROOT,
    )
    try:
        wait_up(f"http://127.0.0.1:{port}/all.xml")
        results["aggregator.serve.server"] = measure(
            f"http://127.0.0.1:{port}", args.seconds, args.connections
        )
    finally:
        ours.send_signal(signal.SIGTERM)
        ours.wait(10)
    for workers in (1, 2):
        nginx_dir = folder / f"nginx{workers}"
        (nginx_dir / "tmp").mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = nginx_dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(workers=workers, folder=nginx_dir, port=port, root=output)
        )
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(nginx_dir)])
        try:
            wait_up(f"http://127.0.0.1:{port}/all.xml")
            results[f"nginx ({workers} worker{'s' if workers > 1 else ''})"] = measure(
                f"http://127.0.0.1:{port}", args.seconds, args.connections
            )
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
    print(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
