"""Jobs for the concurrency tests, rebuilt by each process from a catalogue named in the env.

`same_partition_job` runs in-process (the test forks two of its runs at once). `many_targets_job` runs
its steps in processes forked from a forkserver that preloads this module: when the catalogue variable
is set (it is, in the forkserver), importing the module builds the job once, and every forked step
process starts with it built instead of building 50 graph assets again.
"""

from __future__ import annotations

import functools
import os

import dagster as dg

from unload_assets.definitions import build_definitions

CATALOGUE_ENV = "CONCURRENCY_CATALOGUE"
SAME_PARTITION_ENV = "SAME_PARTITION_CATALOGUE"
MAX_CONCURRENT_STEPS = 8  # twice the Redshift pool: without the pool, 8 UNLOADs could run at once


def many_targets_job() -> dg.JobDefinition:
    return _job(os.environ[CATALOGUE_ENV])


@functools.cache
def _job(catalogue: str) -> dg.JobDefinition:
    defs = build_definitions(catalogue)
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


if os.environ.get(CATALOGUE_ENV):
    many_targets_job()
