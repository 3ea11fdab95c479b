"""Assembles the code location; builds nothing until Dagster asks (no I/O at import)."""

from __future__ import annotations

import functools
import gc
import os
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from unload_assets.catalogue.model import Catalogue, UnloadTarget, load_catalogue
from unload_assets.defs.assets import (
    HANDOFF_IO_MANAGER,
    build_unload_assets,
    external_table_specs,
    handoff_prefix,
)
from unload_assets.defs.execution import executor_from_env
from unload_assets.defs.schedules import build_morning_runs
from unload_assets.defs.sensors import DEFAULT_INTERVAL_SECONDS, build_notification_sensors
from unload_assets.resources import UnloadSettings, redshift_from_env
from unload_assets.resources.slack import UnloadSlackResource

DEFAULT_TIMEZONE = "America/Los_Angeles"


def unload_timezone() -> str:
    return os.getenv("UNLOAD_TIMEZONE") or DEFAULT_TIMEZONE


def _whole_number(name: str, default: int, low: int, high: int | None = None) -> int:
    """The environment variable `name` as a whole number from `low` to `high` (`default` when unset);
    a ValueError naming the variable otherwise."""
    raw = os.getenv(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f" from {low} to {high}" if high is not None else ""
        raise ValueError(f"{name} must be a whole number{bounds}, not {raw!r}")
    return int(raw)


def sensor_interval_seconds() -> int:
    """UNLOAD_SENSOR_INTERVAL_SECONDS: how often the Slack sensors look for finished runs (30 s)."""
    return _whole_number("UNLOAD_SENSOR_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS, 5, 3600)


def max_concurrent_unloads() -> int:
    """UNLOAD_MAX_CONCURRENT: UNLOADs one run's unload step runs at once (4)."""
    return _whole_number("UNLOAD_MAX_CONCURRENT", 4, 1, 50)


def batch_size() -> int:
    """UNLOAD_BATCH_SIZE: targets per pair of ops (0, the default: all targets of a partitioning).

    Smaller batches give a distributed executor (Celery, Kubernetes) steps to spread over machines."""
    return _whole_number("UNLOAD_BATCH_SIZE", 0, 0)


def _optional_secret(name: str) -> dg.EnvVar | None:
    # Key-based UNLOAD authorization is opt-in: only wire the variables that are set.
    return dg.EnvVar(name) if os.getenv(name) else None


def _groups(
    targets: list[UnloadTarget],
) -> list[tuple[str, dg.PartitionsDefinition | None, list[UnloadTarget]]]:
    """Targets by partitions definition (one multi-asset each): `daily` (or `daily_from_<start>` when
    targets start on different days) and `unpartitioned`."""
    by_start: dict[date | None, list[UnloadTarget]] = {}
    for target in targets:
        start = target.partitioning.start_date if target.partitioning.type == "daily" else None
        by_start.setdefault(start, []).append(target)
    starts = sorted(s for s in by_start if s is not None)
    groups: list[tuple[str, dg.PartitionsDefinition | None, list[UnloadTarget]]] = [
        (
            "daily" if len(starts) == 1 else f"daily_from_{start:%Y_%m_%d}",
            dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=unload_timezone()),
            by_start[start],
        )
        for start in starts
    ]
    if None in by_start:
        groups.append(("unpartitioned", None, by_start[None]))
    size = batch_size()
    if not size:
        return groups
    return [
        (f"{name}_{n // size + 1}", partitions_def, group[n : n + size])
        for name, partitions_def, group in groups
        if len(group) > size
        for n in range(0, len(group), size)
    ] + [g for g in groups if len(g[2]) <= size]


def build_resources(catalogue: Catalogue) -> dict[str, object]:
    s3 = S3Resource(endpoint_url=os.getenv("AWS_ENDPOINT_URL_S3") or None)
    bucket = catalogue.bucket or dg.EnvVar("UNLOAD_BUCKET")
    staging = os.getenv("UNLOAD_STAGING_PREFIX", "_staging")
    return {
        "redshift": redshift_from_env(os.environ),
        "s3": s3,
        # The unload op's handoff to the rename op lives in S3, beside the staged files: a step, a retry
        # or a re-execution from failure may run on a machine (a pod) that never saw the first attempt.
        HANDOFF_IO_MANAGER: S3PickleIOManager(
            s3_resource=s3, s3_bucket=bucket, s3_prefix=handoff_prefix(staging)
        ),
        "unload_settings": UnloadSettings(
            bucket=bucket,
            staging_prefix=staging,
            iam_role=catalogue.iam_role or os.getenv("UNLOAD_IAM_ROLE") or None,
            access_key_id=_optional_secret("UNLOAD_ACCESS_KEY_ID"),
            secret_access_key=_optional_secret("UNLOAD_SECRET_ACCESS_KEY"),
            session_token=_optional_secret("UNLOAD_SESSION_TOKEN"),
            max_concurrent_unloads=max_concurrent_unloads(),
        ),
        # An unset token stays empty (not a config error) so the sensors can say what is missing.
        "slack": UnloadSlackResource(
            token=_optional_secret("SLACK_BOT_TOKEN") or "",
            channel=os.getenv("SLACK_CHANNEL", ""),
            base_url=os.getenv("SLACK_API_URL", ""),
        ),
    }


def build_definitions(catalogue_path: str | Path | None = None) -> dg.Definitions:
    catalogue = load_catalogue(catalogue_path)
    unload_assets = [
        build_unload_assets(targets, name=name, partitions_def=partitions_def)
        for name, partitions_def, targets in _groups(catalogue.targets)
    ]
    morning = build_morning_runs(unload_assets, timezone=unload_timezone())
    return dg.Definitions(
        assets=[
            *external_table_specs(catalogue.targets, database=os.getenv("REDSHIFT_DATABASE") or None),
            *unload_assets,
        ],
        jobs=[run.job for run in morning],
        schedules=[run.schedule for run in morning],
        sensors=build_notification_sensors(sensor_interval_seconds()),
        resources=build_resources(catalogue),
        executor=executor_from_env(),
    )


@dg.definitions
@functools.cache  # Dagster calls this twice per load (discovery, then the repository)
def defs() -> dg.Definitions:
    built = build_definitions()
    # The definitions live as long as the process: out of the collector's sight, Dagster's own work
    # after the build (snapshots, validation) no longer rescans them. `dagster definitions validate` of
    # 1000 targets: 5.8 s instead of 7.1 s (benchmarks/bench_load.py); it also keeps the pages shared
    # with the step processes the forkserver forks.
    gc.freeze()
    return built
