"""`python -m bench.cluster` runs end to end at tiny sizes (real nodes on the test
PostgreSQL server, tests/pg.py: skipped without one, failed under
AGGREGATOR_REQUIRE_SERVICES=1). Its figures are not asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.pg import SERVER

ROOT = Path(__file__).resolve().parent.parent


def test_the_cluster_bench_prints_its_rows(postgres_database: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cluster",
            *("--sources", "12", "--hosts", "2", "--interval", "3", "--window", "3"),
            *("--warmup", "60", "--nodes", "2"),
        ],
        cwd=ROOT,
        env={**os.environ, "AGGREGATOR_TEST_POSTGRES": SERVER},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert any(row.startswith("| 1 × SQLite") for row in rows)
    assert any(row.startswith("| 2 × PostgreSQL") for row in rows)
