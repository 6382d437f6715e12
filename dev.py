#!/usr/bin/env python3
"""Set up and run the project with nothing but Python installed.

    python3 dev.py run     # virtualenv + install, then the daemon on config/sources.toml
    python3 dev.py test    # virtualenv + install, then ruff, mypy and the whole pytest suite
    python3 dev.py bench   # the benchmarks under bench/, results into BENCHMARKS.md
    python3 dev.py aggregator ARGS...   # the command line, e.g. `... aggregator status`

The virtualenv is .venv (or $AGGREGATOR_VENV); it is reinstalled only when
pyproject.toml changes. Extra arguments go to the command run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("AGGREGATOR_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
LINTED = ["aggregator", "tests", "bench", "scripts", "dev.py"]


def _stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv(extras: str = "dev") -> None:
    if os.environ.get("AGGREGATOR_SKIP_INSTALL") == "1":
        return  # the caller vouches for an environment that already has everything
    if not (BIN / "python").exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    marker = VENV / f".aggregator-installed-{extras}"
    if marker.exists() and marker.read_text() == _stamp():
        return
    print("installing aggregator and its dependencies", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[{extras}]"], check=True)
    marker.write_text(_stamp())


def run(args: list[str]) -> int:
    ensure_venv()
    command = [str(BIN / "python"), "-m", "aggregator", "run", *args]
    try:
        return subprocess.call(command, cwd=ROOT)
    except KeyboardInterrupt:
        return 0


def aggregator(args: list[str]) -> int:
    """The `aggregator` command installed in the virtualenv, run from the current folder;
    without --config or AGGREGATOR_CONFIG it works on this project's config file."""
    ensure_venv()
    env = {**os.environ}
    env.setdefault("AGGREGATOR_CONFIG", str(ROOT / "config" / "sources.toml"))
    try:
        return subprocess.call([str(BIN / "python"), "-m", "aggregator", *args], env=env)
    except KeyboardInterrupt:
        return 130


def _parallel(args: list[str]) -> list[str]:
    """Four pytest-xdist workers unless the caller chose (-n/--numprocesses): most tests
    wait on real servers and processes, so four share two cores well."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args)
    return [] if chosen else ["-n", "4"]


def test(args: list[str]) -> int:
    ensure_venv()
    steps = [
        [str(BIN / "ruff"), "check", *[p for p in LINTED if (ROOT / p).exists()]],
        [str(BIN / "mypy")],
        [str(BIN / "lint-imports")],
        [str(BIN / "python"), "-m", "pytest", *_parallel(args), *args],
    ]
    for step in steps:
        print(
            "$",
            " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)),
            flush=True,
        )
        code = subprocess.call(step, cwd=ROOT)
        if code != 0:
            return code
    return 0


def bench(args: list[str]) -> int:
    ensure_venv("dev,bench")
    return subprocess.call([str(BIN / "python"), "-m", "bench", *args], cwd=ROOT)


def main() -> int:
    commands = {"run": run, "test": test, "bench": bench, "aggregator": aggregator}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
