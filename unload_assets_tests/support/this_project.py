"""This repository's own instance (`unload_assets/defs/unload_targets/defs.yaml`, named `unloads`), as the
tests refer to it: its names, and its configuration read from the environment exactly as its defs.yaml says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from unload_assets.component import THIS_PROJECT_DEFS_YAML, this_project
from unload_assets.configuration import Configuration
from unload_assets.names import DEFAULT_POOL, Names
from unload_assets.notify.run_post import RunTags
from unload_assets.resources import RedshiftUnloadResource

NAMES = Names("unloads")
asset_key_for = NAMES.asset_key
DAILY_JOB = NAMES.daily_job()
UNPARTITIONED_JOB = NAMES.unpartitioned_job
SUCCESS_SENSOR, FAILURE_SENSOR, DEADLINE_SENSOR = (
    NAMES.success_sensor,
    NAMES.failure_sensor,
    NAMES.deadline_sensor,
)
REDSHIFT_POOL = DEFAULT_POOL
TAGS = RunTags.of(NAMES)
ANNOUNCED_TAG = TAGS.announced
DEFS_YAML = THIS_PROJECT_DEFS_YAML


def configuration(catalogue: str | Path | None = None) -> Configuration:
    """The instance as the environment configures it now (on `catalogue` when given)."""
    return this_project(catalogue)


def redshift_resource() -> RedshiftUnloadResource:
    """The Redshift resource the environment configures now (its EnvVars still to be resolved)."""
    return this_project().redshift


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
            "freshness": freshness_view(node.freshness_policy),
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


def freshness_view(policy: dg.FreshnessPolicy | None) -> dict[str, Any] | None:
    """A target's deliver_by, as the UI shows it (a cron freshness policy)."""
    if policy is None:
        return None
    fields = ("deadline_cron", "timezone", "fail_window", "warn_window")
    found: dict[str, Any] = {"type": type(policy).__name__}
    found |= {name: str(getattr(policy, name)) for name in fields if hasattr(policy, name)}
    if hasattr(policy, "lower_bound_delta"):
        found["lower_bound_seconds"] = policy.lower_bound_delta.total_seconds()
    return found
