"""The morning runs: jobs over an instance's targets and one schedule per job, at the instance's run time
(09:00 unless `schedule.at` says otherwise) in its time zone.

Daily targets sharing a partitions definition share a job (`daily_<instance>`); Dagster refuses one job
over assets with different partitions definitions, so each distinct start date gets its own job
(`daily_<instance>_from_<date>`). Unpartitioned targets get a job of their own (`unpartitioned_<instance>`)
rather than riding along in the daily one: a backfill launched from a job's page runs every asset of
the job once per partition, which would re-unload each unpartitioned target once per backfilled day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from unload_assets.configuration import Configuration

# When the deployment retries failed runs (run_retries in dagster.yaml), a retry runs the targets that
# were not delivered, UNLOAD included; Dagster's default (FROM_FAILURE) would run the rename step only.
RETRY_STRATEGY = {"dagster/retry_strategy": "FROM_ASSET_FAILURE"}


@dataclass(frozen=True)
class MorningRun:
    job: Any  # what dg.define_asset_job returns; Dagster does not export its class
    schedule: dg.ScheduleDefinition


def previous_day(scheduled: datetime | None, timezone: str) -> date:
    """The day before the tick, in the unload timezone (naive times are read as local)."""
    tz = ZoneInfo(timezone)
    when = scheduled or datetime.now(tz)
    local = when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)
    return local.date() - timedelta(days=1)


def run_key(day: date) -> str:
    # Stable per day: a re-evaluated tick (daemon restart, catch-up) cannot launch the day twice.
    return f"daily-{day.isoformat()}"


def run_at_cron(run_at: time) -> str:
    """The run time as a cron, read in the execution time zone: the same local time on both sides of DST."""
    return f"{run_at.minute} {run_at.hour} * * *"


def build_morning_runs(config: Configuration, assets: Sequence[dg.AssetsDefinition]) -> list[MorningRun]:
    """One job and one morning schedule per partitions definition, plus one for unpartitioned targets."""
    names = config.names
    groups: list[tuple[dg.PartitionsDefinition | None, list[dg.AssetKey]]] = []
    for asset in assets:
        part = asset.partitions_def
        entry = next((g for g in groups if g[0] == part), None)
        if entry is None:
            entry = (part, [])
            groups.append(entry)
        entry[1].extend(asset.keys)
    partitioned = sorted((g for g in groups if g[0] is not None), key=lambda g: _start(g[0]))
    runs = []
    for partitions_def, keys in partitioned:
        name = names.daily_job(None if len(partitioned) == 1 else _start(partitions_def))
        runs.append(_morning_run(config, name, keys, partitions_def))
    runs += [
        _morning_run(config, names.unpartitioned_job, keys, None) for part, keys in groups if part is None
    ]
    return runs


def _start(partitions_def: dg.PartitionsDefinition | None) -> date:
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return partitions_def.start.date()
    return date.min


def _morning_run(
    config: Configuration, name: str, keys: list[dg.AssetKey], partitions_def: dg.PartitionsDefinition | None
) -> MorningRun:
    timezone, run_at = config.timezone, config.run_at
    what = "yesterday's partition of the daily" if partitions_def else "the unpartitioned"
    job = dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*keys),
        description=f"Runs {what} unload targets (Redshift UNLOAD -> S3).",
        tags=RETRY_STRATEGY,
    )

    @dg.schedule(
        name=config.names.schedule(name, run_at),
        cron_schedule=run_at_cron(run_at),
        execution_timezone=timezone,
        target=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{run_at:%H:%M} {timezone}: {what} unload targets.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day = previous_day(context.scheduled_execution_time, timezone)
        if partitions_def is None:
            return dg.RunRequest(run_key=run_key(day))
        if day < _start(partitions_def):
            return dg.SkipReason(f"{day} is before the first partition of {name} ({_start(partitions_def)}).")
        return dg.RunRequest(run_key=run_key(day), partition_key=day.isoformat())

    return MorningRun(job=job, schedule=_schedule)
