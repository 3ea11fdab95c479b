"""This repository's own instance (`unload_assets/defs/unload_targets/defs.yaml`, named `unloads`), as the
tests refer to it: its names, and its configuration read from the environment exactly as its defs.yaml says.
"""

from __future__ import annotations

from pathlib import Path

from unload_assets.component import THIS_PROJECT_DEFS_YAML, this_project
from unload_assets.configuration import Configuration
from unload_assets.notify.run_post import RunTags
from unload_assets.orchestration.names import DEFAULT_POOL, Names
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
