"""Headless Chromium for tests: Debian's `chromium` package, installed when missing.

Tests that need it skip with the reason when it cannot be had, and fail instead under
AGGREGATOR_REQUIRE_SERVICES=1 (as .ci/run sets), so CI never passes without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

APT = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=600"]
INSTALL_TIMEOUT = 1800
RUN_TIMEOUT = 120
# Headless, as root (no sandbox), offline: nothing of its own fetched or started.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
)


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where the services are required (AGGREGATOR_REQUIRE_SERVICES=1)."""
    if os.environ.get("AGGREGATOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (AGGREGATOR_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [*APT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )


def install_chromium() -> str:
    """apt-get install chromium; "" when it worked, else what went wrong. A fresh
    machine has no package lists yet: on a first failure they are fetched and the
    install tried once more."""
    done = _apt("install", "-y", "chromium")
    if done.returncode != 0:
        _apt("update")
        done = _apt("install", "-y", "chromium")
    return "" if done.returncode == 0 else (done.stderr or done.stdout)[-1500:]


def find_chromium() -> str:
    """The chromium binary, installed first if missing and this process may (root with
    apt-get); else skip (or fail) saying why."""
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get"):
        unavailable("headless Chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        unavailable("headless Chromium is not installed: run `apt-get install chromium` as root")
    problem = install_chromium()
    found = shutil.which("chromium")
    if not found:
        unavailable(f"`apt-get install chromium` did not give a chromium binary: {problem}")
    return found


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """One headless Chromium run with a fresh profile, thrown away afterwards."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=False,
            cwd=profile,
        )
    if done.returncode != 0:
        raise AssertionError(
            f"chromium exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
        )
    return done


def dump_dom(binary: str, url: str) -> str:
    """The DOM Chromium built from the page, serialised."""
    return run_chromium(binary, "--dump-dom", url).stdout.decode("utf-8")


def screenshot(binary: str, url: str, path: Path, size: str = "1400,700") -> Path:
    run_chromium(binary, f"--screenshot={path}", f"--window-size={size}", url)
    if not path.exists():
        raise AssertionError(f"chromium wrote no screenshot at {path}")
    return path
