"""Jobs for the concurrency tests, rebuilt by each process.

`same_partition_job` runs in-process (the test forks two of its runs at once) from the catalogue the
environment names. `many_targets_job` runs its steps in processes of a multiprocess executor; what it
is built from comes as an argument (the forkserver that forks the steps may have started in another
test, with another environment).
"""

from __future__ import annotations

import functools
import os

import dagster as dg

from unload_assets.component import build_definitions
from unload_assets_tests.support.pipeline_helpers import environment

CATALOGUE_ENV = "CONCURRENCY_CATALOGUE"
SAME_PARTITION_ENV = "SAME_PARTITION_CATALOGUE"
MAX_CONCURRENT_STEPS = 8  # twice the Redshift pool: without the pool, 8 UNLOADs could run at once


def many_targets_job(env: dict[str, str]) -> dg.JobDefinition:
    """Built from `env` (the catalogue, the batch size, UNLOADs per step), passed to each step process
    as an argument (pipeline_helpers.job_with_env)."""
    return _job(tuple(sorted(env.items())))


@functools.cache
def _job(env: tuple[tuple[str, str], ...]) -> dg.JobDefinition:
    with environment(dict(env)):
        defs = build_definitions(dict(env)[CATALOGUE_ENV])
    executor = dg.multiprocess_executor.configured(
        {
            "max_concurrent": MAX_CONCURRENT_STEPS,
            "start_method": {"forkserver": {"preload_modules": [__name__]}},
        }
    )
    job = dg.define_asset_job(
        "many_targets", selection=dg.AssetSelection.all().without_checks(), executor_def=executor
    )
    defs = dg.Definitions(assets=defs.assets, resources=defs.resources, jobs=[job])
    return defs.resolve_job_def("many_targets")


def same_partition_job() -> dg.JobDefinition:
    defs = build_definitions(os.environ[SAME_PARTITION_ENV])
    job = dg.define_asset_job("same_partition", executor_def=dg.in_process_executor)
    defs = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job]
    )
    return defs.resolve_job_def("same_partition")
