"""The real W3C feed validator over what we publish, when a checkout of it is at hand.

It is not on PyPI, so it cannot be installed by the project: point
AGGREGATOR_FEEDVALIDATOR at the src/ folder of a w3c/feedvalidator checkout (with
html5lib and rdflib installed) and this runs scripts/w3c_feedvalidator.py's check:
feedparser's test documents and the hostile ones published, no validator error.
Without it, tests/atomcheck.py's re-implementation of the validator's URI rules
runs in every test that publishes.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = os.environ.get("AGGREGATOR_FEEDVALIDATOR", "")


@pytest.mark.skipif(
    not VALIDATOR or importlib.util.find_spec("html5lib") is None,
    reason="set AGGREGATOR_FEEDVALIDATOR to a w3c/feedvalidator src/ folder (html5lib and "
    "rdflib installed) to run the real validator; see scripts/w3c_feedvalidator.py",
)
def test_the_w3c_feed_validator_finds_no_error(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("w3c", ROOT / "scripts" / "w3c_feedvalidator.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    validator = script.load_validator(Path(VALIDATOR))
    folder = script.publish_corpus(tmp_path)
    errors, _ = script.validate(validator, folder, script.BASE_URL)
    assert len(list(folder.rglob("*.xml"))) > 20
    assert errors == []
