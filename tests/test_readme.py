"""The README's first two commands work from a fresh copy of the project."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import feedparser

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S)
    assert block, "the README opens with a code block of commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_run_and_test_commands() -> None:
    commands = readme_commands()
    assert commands[:2] == ["python3 dev.py run", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 dev.py test" in ci


def fresh_copy(target: Path) -> Path:
    """The files a clone would have: tracked ones, plus new ones git does not ignore."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_command_serves_the_sample_feeds(tmp_path: Path) -> None:
    project = fresh_copy(tmp_path / "clone")
    port = free_port()
    env = {
        **os.environ,
        "AGGREGATOR_VENV": sys.prefix,  # this environment already has everything installed,
        "AGGREGATOR_SKIP_INSTALL": "1",  # so no download happens inside the test
        "AGGREGATOR_PORT": str(port),  # the bundled config's base_url follows it
    }
    env.pop("AGGREGATOR_BASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "dev.py", "run"],
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        feed = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/tag/sanqin-dushibao-xinwen.xml"
                with urllib.request.urlopen(url, timeout=10) as response:
                    feed = feedparser.parse(response.read())
                break
            except OSError:  # not serving yet (or 404 until published)
                pass
            time.sleep(0.3)
        assert feed is not None, "the daemon never served the tag feed"
        assert feed.feed.title == "三秦都市报新闻"
        assert len(feed.entries) == 4  # five items in two samples, one shared
        base = f"http://127.0.0.1:{port}/"
        assert [link.href for link in feed.feed.links if link.rel == "self"] == [
            base + "tag/sanqin-dushibao-xinwen.xml"
        ]
        with urllib.request.urlopen(base, timeout=10) as response:
            index = response.read().decode()
        assert 'rel="alternate" type="application/atom+xml"' in index
        assert f'href="{base}all.xml"' in index and ":8080" not in index
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"serving http://127.0.0.1:{port}/" in output
    announced = [line for line in output.splitlines() if line.startswith("  http")]
    assert f"  {base}tag/sanqin-dushibao-xinwen.xml" in announced
    assert all(line.startswith(f"  {base}") for line in announced), output
    assert ":8080" not in output
    assert (project / "feeds" / "all.xml").exists()
    assert (project / "data" / "aggregator.db").exists()


def test_the_command_line_is_reached_through_dev_py(tmp_path: Path) -> None:
    """`python3 dev.py aggregator ...` runs the CLI installed in the virtualenv, from any
    folder, on the project's config unless told otherwise."""
    env = {**os.environ, "AGGREGATOR_VENV": sys.prefix, "AGGREGATOR_SKIP_INSTALL": "1"}
    env.pop("AGGREGATOR_CONFIG", None)
    dev = str(ROOT / "dev.py")
    shown = subprocess.run(
        [sys.executable, dev, "aggregator", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: aggregator [OPTIONS] COMMAND")
    checked = subprocess.run(
        [sys.executable, dev, "aggregator", "config", "check"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{ROOT / 'config' / 'sources.toml'}: ok, 2 sources\n"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 dev.py aggregator" in readme


def test_the_first_install_prints_no_setuptools_warning() -> None:
    """setuptools >= 77 reads the license as an SPDX expression (the TOML-table form made
    every install warn, twice); with the flat layout declared, an editable install is a
    plain .pth instead of an import finder that setuptools warns about. (Checked by hand:
    `pip install -e .` with pip 26 and setuptools 84 prints nothing.)"""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(pyproject["project"]["license"], str)
    assert "setuptools>=77" in pyproject["build-system"]["requires"][0]
    assert pyproject["tool"]["setuptools"]["package-dir"] == {"": "."}


def test_every_dependency_says_why_it_is_there() -> None:
    """Each package pyproject.toml installs has its row in the README's dependency table."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Dependencies, and why", 1)[1].split("\n## ", 1)[0]
    cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("|")]
    named = {word.lower() for cell in cells for word in re.findall(r"[\w.-]+", cell)}
    wanted = [
        *pyproject["project"]["dependencies"],
        *pyproject["project"]["optional-dependencies"]["postgres"],
    ]
    missing = [d for d in wanted if re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() not in named]
    assert missing == []
