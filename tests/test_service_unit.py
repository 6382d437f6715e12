"""The systemd unit shipped in config/aggregator.service lets the daemon write everything
it writes, and waits for the worst stop before killing it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from aggregator.config.loader import PostsSettings, Settings
from aggregator.run.daemon import worst_stop_seconds

UNIT = Path(__file__).resolve().parents[1] / "config" / "aggregator.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_daemon_may_write_its_database_feeds_and_posts() -> None:
    unit = directives()
    assert unit["ProtectSystem"] == ["strict"]  # everything else stays read-only
    project = PurePosixPath(unit["WorkingDirectory"][0])
    writable = [PurePosixPath(p.lstrip("-")) for v in unit["ReadWritePaths"] for p in v.split()]
    settings = Settings()
    # The database's folder holds its WAL, its lock files and the daemon's lock.
    written = [settings.database.parent, settings.output_dir, PostsSettings().output_dir]
    for folder in written:
        path = project / folder.as_posix()
        assert any(path == w or w in path.parents for w in writable), f"{path} is read-only"


def test_systemd_waits_for_the_worst_stop() -> None:
    timeout = float(directives()["TimeoutStopSec"][0])
    assert timeout >= worst_stop_seconds(Settings().stop_timeout)
    assert worst_stop_seconds(30) == 75  # the figures docs/service.md gives


def test_systemd_reads_the_unit_without_complaint(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    copy = tmp_path / UNIT.name
    copy.write_bytes(UNIT.read_bytes())
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    # The one complaint possible here: the unit's venv is not installed on this machine.
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line and "/opt/aggregator/.venv/bin/aggregator is not executable" not in line
    ]
    assert complaints == []
