#!/usr/bin/env python3
"""Build tests/fixtures/upgrade/: a database as the release before identity scopes made it.

    python scripts/make_upgrade_fixture.py

Run it only from the commit named in tests/fixtures/upgrade/README.md (the last one
whose store had schema 9): its point is a database made by that release's own code,
with that release's dedup mistakes in it (short guids of two sources collided,
description-only items collapsed into one entry, an unstable-guid feed that grew on
every poll). It polls the sources of tests/fixtures/upgrade/sources.toml three times
(feeds/<id>.xml is what each one served; the unstable source serves
feeds/unstable-<round>.xml), applies retention (one entry becomes a tombstone),
publishes, and writes aggregator.db.gz and the published all.xml beside them.
tests/test_upgrade.py opens a copy of that database with the current code.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "upgrade"
START = datetime(2022, 1, 20, 4, 0, tzinfo=UTC)
ROUNDS = 3


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from aggregator.config.loader import load_config
    from aggregator.publish.publisher import Publisher
    from aggregator.run.poll import parse_and_store
    from aggregator.store.retention import cleanup
    from aggregator.store.sqlite import SqliteStore
    from aggregator.store.sqlite.migrations import SCHEMA_VERSION

    with tempfile.TemporaryDirectory() as temp:
        database = Path(temp) / "aggregator.db"
        env = {"AGGREGATOR_DATABASE": str(database), "AGGREGATOR_OUTPUT_DIR": f"{temp}/feeds"}
        config = load_config(FIXTURE / "sources.toml", env=env)
        with SqliteStore(database) as store:
            store.sync_sources(config.sources)
            for number in range(1, ROUNDS + 1):
                now = START + timedelta(hours=number - 1)
                for source in config.sources:
                    name = f"unstable-{number}" if source.id == "unstable" else source.id
                    body = (FIXTURE / "feeds" / f"{name}.xml").read_bytes()
                    parse_and_store(source, store, body, source.url, "application/rss+xml", now)
            cleanup(store, config, START + timedelta(hours=ROUNDS))
            Publisher(config, store).publish()
            version = store.schema_version
        shutil.copyfile(Path(temp) / "feeds" / "all.xml", FIXTURE / "all.xml")
        with (
            open(database, "rb") as raw,
            gzip.GzipFile(FIXTURE / "aggregator.db.gz", "wb", mtime=0) as packed,
        ):
            shutil.copyfileobj(raw, packed)
    print(f"schema {version} (code's {SCHEMA_VERSION}) database written to {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
