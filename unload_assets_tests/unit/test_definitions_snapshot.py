"""The built definitions of the packaged catalogue against a committed snapshot: asset keys, groups,
deps, kinds, owners, tags, partitions, checks, freshness policies, jobs, schedules and sensors. A Dagster
upgrade or a refactor that changes any of them fails here and shows the difference; when the change is meant,
`UPDATE_SNAPSHOTS=1 .venv/bin/pytest unload_assets_tests/unit/test_definitions_snapshot.py` rewrites the file
(review it in the diff). Needs no server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unload_assets.catalogue import PACKAGED_CATALOGUE
from unload_assets.component import build_definitions
from unload_assets_tests.support.this_project import ENV, described

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def test_the_definitions_match_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    current = described(build_definitions(PACKAGED_CATALOGUE))
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.getenv("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with UPDATE_SNAPSHOTS=1 to write {SNAPSHOT}"
    assert json.loads(SNAPSHOT.read_text()) == current, f"the definitions differ from {SNAPSHOT.name}"
