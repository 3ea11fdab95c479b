"""The one assembly: a catalogue in, the code location's definitions out.

The flow it wires, in order: the catalogue (`catalogue/`), the unload and rename ops of each group of
targets (`orchestration/assets.py`), their checks, the 09:00 schedules, the Slack sensors and the
deadline sensor (`orchestration/`), and the resources (`resources/`), every setting read by
`environment.py`. Used by the `UnloadTargets` component (`component.py`), which is how
`definitions.py` loads this project.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from unload_assets import environment
from unload_assets.catalogue import Catalogue, load_catalogue
from unload_assets.orchestration.assets import (
    HANDOFF_IO_MANAGER,
    build_unload_assets,
    external_table_specs,
    groups,
)
from unload_assets.orchestration.deadline_sensor import build_deadline_sensor
from unload_assets.orchestration.execution import executor_from_env
from unload_assets.orchestration.schedules import build_morning_runs
from unload_assets.orchestration.sensors import build_notification_sensors
from unload_assets.resources import UnloadSettings
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets.s3_naming import handoff_prefix


def build_resources(catalogue: Catalogue) -> dict[str, object]:
    s3 = S3Resource(endpoint_url=environment.s3_endpoint_url())
    bucket = catalogue.bucket or dg.EnvVar("UNLOAD_BUCKET")
    staging = environment.staging_prefix()
    secret = environment.optional_secret
    return {
        "redshift": environment.redshift_resource(),
        "s3": s3,
        # The unload op's handoff to the rename op lives in S3, beside the staged files: a step, a retry
        # or a re-execution from failure may run on a machine (a pod) that never saw the first attempt.
        HANDOFF_IO_MANAGER: S3PickleIOManager(
            s3_resource=s3, s3_bucket=bucket, s3_prefix=handoff_prefix(staging)
        ),
        "unload_settings": UnloadSettings(
            bucket=bucket,
            staging_prefix=staging,
            iam_role=catalogue.iam_role or environment.iam_role(),
            access_key_id=secret("UNLOAD_ACCESS_KEY_ID"),
            secret_access_key=secret("UNLOAD_SECRET_ACCESS_KEY"),
            session_token=secret("UNLOAD_SESSION_TOKEN"),
            max_concurrent_unloads=environment.max_concurrent_unloads(),
        ),
        # An unset token stays empty (not a config error) so the sensors can say what is missing.
        "slack": UnloadSlackResource(
            token=secret("SLACK_BOT_TOKEN") or "",
            channel=environment.slack_channel(),
            base_url=environment.slack_api_url(),
        ),
    }


def build_definitions(catalogue_path: str | Path | None = None) -> dg.Definitions:
    """The definitions of the catalogue at `catalogue_path` (else UNLOAD_TARGETS_FILE, else the packaged
    one)."""
    return build_definitions_for(load_catalogue(catalogue_path))


def build_definitions_for(catalogue: Catalogue, *, executor: bool = True) -> dg.Definitions:
    """`catalogue`'s assets, checks, jobs, schedules, sensors and resources; `executor`: also the
    project's executor (a host project may set its own)."""
    timezone, interval = environment.timezone(), environment.sensor_interval_seconds()
    unload_assets = [
        build_unload_assets(targets, name=name, partitions_def=partitions_def, timezone=timezone)
        for name, partitions_def, targets in groups(catalogue.targets, timezone, environment.batch_size())
    ]
    morning = build_morning_runs(unload_assets, timezone=timezone)
    return dg.Definitions(
        assets=[
            *external_table_specs(catalogue.targets, database=environment.redshift_database()),
            *unload_assets,
        ],
        jobs=[run.job for run in morning],
        schedules=[run.schedule for run in morning],
        sensors=[
            *build_notification_sensors(interval),
            build_deadline_sensor(catalogue.targets, timezone=timezone, interval_seconds=interval),
        ],
        resources=build_resources(catalogue),
        executor=executor_from_env() if executor else None,
    )
