"""The command leaves without the interpreter's teardown (aggregator.cli.main.leave), but
as Python would have left: its exit status, all of its output, its exit handlers run;
and where that shortcut would lose something, it exits the usual way."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys, threading, time
from aggregator.cli.main import leave
atexit.register(lambda: print("exit handler ran"))
if "thread" in sys.argv:
    threading.Thread(target=time.sleep, args=(0.2,)).start()
sys.stdout.write("x" * 200_000)  # more than a pipe holds: written out at the flush
sys.stderr.write("to stderr\\n")
leave(SystemExit({code!r}))
"""


def run(code: object, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(code=code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("args", [(), ("thread",)], ids=["alone", "another thread running"])
@pytest.mark.parametrize("code", [0, 2, None])
def test_the_status_the_output_and_the_exit_handlers_are_kept(
    code: int | None, args: tuple[str, ...]
) -> None:
    done = run(code, *args)
    assert done.returncode == (code or 0)
    assert done.stdout == "x" * 200_000 + "exit handler ran\n"
    assert done.stderr == "to stderr\n"


def test_a_message_for_the_status_is_printed_as_python_prints_it() -> None:
    done = run("no such source: s9")
    assert done.returncode == 1
    assert done.stderr == "to stderr\nno such source: s9\n"
    assert done.stdout.endswith("exit handler ran\n")
