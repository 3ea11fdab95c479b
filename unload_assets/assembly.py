"""The one assembly: an instance's configuration in, its definitions out.

The flow it wires, in order: the catalogue (`catalogue/`), the unload and rename ops of each group of
targets (`orchestration/assets.py`), their checks, the morning schedules, the Slack sensors and the
deadline sensor (`orchestration/`), and the resources (`resources/`), every one named after the instance
(`names.py`). Used by the `UnloadTargets` component (`component.py`), which is how
`definitions.py` loads this project and how any other project uses it.
"""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager

from unload_assets.catalogue import Catalogue, CatalogueError, inline_catalogue, read_catalogue
from unload_assets.catalogue.model import problem_report
from unload_assets.configuration import Configuration
from unload_assets.notify.deadline_sensor import build_deadline_sensor
from unload_assets.notify.run_sensors import build_notification_sensors
from unload_assets.orchestration.assets import (
    build_unload_assets,
    external_table_specs,
    groups,
    not_loaded_assets,
)
from unload_assets.orchestration.execution import executor_from_env
from unload_assets.orchestration.schedules import build_morning_runs
from unload_assets.s3_naming import handoff_prefix

log = dg.get_dagster_logger("unload_assets")


def read_instance_catalogue(config: Configuration) -> Catalogue:
    """The instance's catalogue, read as its configuration chooses; in strict mode any problem raises."""
    choice = config.catalogue
    if choice.path is None:
        assert choice.defs_yaml is not None
        catalogue = inline_catalogue(
            choice.inline_defaults,
            choice.inline_targets,
            defs_yaml=choice.defs_yaml,
            run_at=config.run_at,
            instance_defaults=config.target_defaults,
        )
    else:
        catalogue = read_catalogue(choice.path, run_at=config.run_at, defaults=config.target_defaults)
    where = f"{catalogue.source} ({choice.origin})"
    if catalogue.problems and config.strict:
        report = problem_report(catalogue.problems, catalogue.source)
        log.error(
            f"{catalogue.problems[0].located}\n(strict: {len(catalogue.problems)} problem(s) in {where})"
        )
        raise CatalogueError(report)
    summary = f"'{config.names.instance}': catalogue {where}: {len(catalogue.targets)} target(s) loaded"
    if catalogue.not_loaded:
        summary += f", {len(catalogue.not_loaded)} not loaded"
    log.info(summary + ".")
    for problem in catalogue.problems:
        log.warning(f"{problem.located}")
    for name, note in catalogue.lineage_notes.items():
        log.warning(f"{catalogue.source}: target {name!r}: {note}")
    return catalogue


def build_instance(config: Configuration, catalogue: Catalogue | None = None) -> dg.Definitions:
    """The instance's assets, checks, jobs, schedules, sensors and resources (and the project's executor
    when the instance sets it), from its catalogue (read here unless given)."""
    catalogue = catalogue if catalogue is not None else read_instance_catalogue(config)
    unload_assets = [
        build_unload_assets(config, targets, group=group, partitions_def=partitions_def, catalogue=catalogue)
        for group, partitions_def, targets in groups(catalogue.targets, config.timezone, config.batch_size)
    ]
    morning = build_morning_runs(config, unload_assets)
    sensors: list[dg.SensorDefinition] = []
    if config.slack is not None:
        sensors += build_notification_sensors(config, catalogue)
        sensors.append(build_deadline_sensor(config, catalogue.targets))
    return dg.Definitions(
        assets=[
            *(
                external_table_specs(config.names, catalogue.targets, database=config.database)
                if config.declare_upstream_tables
                else []
            ),
            *unload_assets,
            *not_loaded_assets(config, catalogue.not_loaded),
        ],
        jobs=[run.job for run in morning],
        schedules=[run.schedule for run in morning],
        sensors=sensors,
        resources=build_resources(config, catalogue),
        executor=executor_from_env() if config.executor else None,
    )


def build_resources(config: Configuration, catalogue: Catalogue | None = None) -> dict[str, object]:
    names, storage, s3 = config.names, config.storage, config.s3
    # The catalogue's defaults.bucket, .iam_role and .expected_bucket_owner win over the instance's.
    chosen = {
        field: value
        for field in ("bucket", "iam_role", "expected_bucket_owner")
        if catalogue is not None and (value := getattr(catalogue, field))
    }
    if chosen:
        storage = storage.model_copy(update=chosen)
    if "expected_bucket_owner" in chosen:
        s3 = s3.model_copy(update={"expected_bucket_owner": chosen["expected_bucket_owner"]})
    resources: dict[str, object] = {
        names.redshift: config.redshift,
        names.s3: s3,
        names.settings: storage,
        # The unload op's handoff to the rename op lives in S3, beside the staged files: a step, a retry
        # or a re-execution from failure may run on a machine (a pod) that never saw the first attempt.
        names.handoff: S3PickleIOManager(
            s3_resource=s3,
            s3_bucket=storage.bucket,
            s3_prefix=handoff_prefix(storage.staging_prefix),
        ),
    }
    if config.slack is not None:
        resources[names.slack] = config.slack
    return resources
