"""The built definitions of the packaged catalogue against a committed snapshot: asset keys, groups,
deps, kinds, owners, tags, partitions, checks, freshness policies, jobs, schedules and sensors. A Dagster
upgrade or a refactor that changes any of them fails here and shows the difference; when the change is meant,
`UPDATE_SNAPSHOTS=1 .venv/bin/pytest unload_assets_tests/unit/test_definitions_snapshot.py` rewrites the file
(review it in the diff). Needs no server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from unload_assets.catalogue import PACKAGED_CATALOGUE
from unload_assets.component import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
ENV = {  # what loading needs; no value here is a secret or reaches a server
    "UNLOAD_TIMEZONE": "America/Los_Angeles",
    "UNLOAD_SENSOR_INTERVAL_SECONDS": "30",
    "REDSHIFT_AUTH": "password",
    "REDSHIFT_HOST": "redshift.invalid",
    "REDSHIFT_DATABASE": "dev",
    "REDSHIFT_USER": "unload",
    "REDSHIFT_PASSWORD": "not-used",
}


def described(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "tags": dict(sorted(node.tags.items())),
            "materializable": node.is_materializable,
            "partitions": type(partitions).__name__ if partitions else None,
            "checks": sorted(c.name for c in node.check_keys),
            "description": node.description,
            "freshness": _freshness(node.freshness_policy),
        }
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)
        for job in (defs.resolve_job_def(name) for name in sorted(j.name for j in defs.jobs or []))
    }
    schedules = {
        s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name}
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
    }
    sensors = {
        s.name: {"interval": s.minimum_interval_seconds, "default": s.default_status.value}
        for s in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def _freshness(policy: dg.FreshnessPolicy | None) -> dict[str, Any] | None:
    """A target's deliver_by, as the UI shows it (a cron freshness policy)."""
    if policy is None:
        return None
    fields = ("deadline_cron", "timezone", "fail_window", "warn_window")
    found: dict[str, Any] = {"type": type(policy).__name__}
    found |= {name: str(getattr(policy, name)) for name in fields if hasattr(policy, name)}
    if hasattr(policy, "lower_bound_delta"):
        found["lower_bound_seconds"] = policy.lower_bound_delta.total_seconds()
    return found


def test_the_definitions_match_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    current = described(build_definitions(PACKAGED_CATALOGUE))
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.getenv("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with UPDATE_SNAPSHOTS=1 to write {SNAPSHOT}"
    assert json.loads(SNAPSHOT.read_text()) == current, f"the definitions differ from {SNAPSHOT.name}"
