"""The real pipeline on the local stack: the 09:00 job's run, then the sensors' Slack message about it.

Everything is what production wires together (build_definitions, its resources, its schedule and
sensors); only the servers are local: the Redshift emulator, the S3 server and the Slack stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from unload_assets_local.stack import LocalStack

from unload_assets_tests.support.this_project import ANNOUNCED_TAG, FAILURE_SENSOR, NAMES, SUCCESS_SENSOR


@pytest.fixture
def defs(stack_env: dict[str, str]) -> dg.Definitions:
    from unload_assets.component import build_definitions

    return build_definitions()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: str | None = None) -> str:
    sensor = defs.resolve_sensor_def(name)
    resources = {NAMES.slack: defs.get_repository_def().get_top_level_resources()[NAMES.slack]}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor.evaluate_tick(context).skip_message or ""


def test_the_morning_run_is_announced_once_with_what_landed_in_s3(
    defs: dg.Definitions, instance: dg.DagsterInstance, local_stack: LocalStack, stack_env: dict[str, str]
) -> None:
    zone = stack_env["UNLOAD_TIMEZONE"]
    schedule = defs.resolve_schedule_def("daily_unloads_at_0900")
    today_0900 = datetime.now(ZoneInfo(zone)).replace(hour=9, minute=0, second=0, microsecond=0)
    tick = today_0900 if datetime.now(ZoneInfo(zone)) >= today_0900 else today_0900 - timedelta(days=1)
    [request] = (
        schedule.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
        ).run_requests
        or []
    )
    job = defs.resolve_job_def("daily_unloads")
    result = job.execute_in_process(
        run_config=request.run_config,
        partition_key=request.partition_key,
        instance=instance,
        tags=request.tags,
    )
    assert result.success
    materializations = result.get_asset_materialization_events()
    assert materializations
    local_stack.slack.clear()

    assert _tick(defs, instance, SUCCESS_SENSOR).startswith("Announced 1 of 1")
    [message] = local_stack.slack.messages()
    assert message["channel"] == stack_env["SLACK_CHANNEL"]
    assert f"{stack_env['DAGSTER_WEBSERVER_URL'].rstrip('/')}/runs/{result.run_id}" in message["text"]
    assert "schedule daily_unloads_at_0900" in message["text"]
    s3 = local_stack.s3.client()
    for event in materializations:
        meta: dict[str, Any] = {k: v.value for k, v in event.materialization.metadata.items()}
        assert (
            meta["dagster/uri"] in message["text"]
            and f"{meta['dagster/row_count']:,} rows" in message["text"]
        )
        assert meta["partition"] == request.partition_key and request.partition_key in message["text"]
        bucket = meta["dagster/uri"][len("s3://") :].split("/", 1)[0]
        for obj in meta["final_objects"]:  # what the message promises is really there, with that size
            assert s3.head_object(Bucket=bucket, Key=obj["key"])["ContentLength"] == obj["size"]
    assert ANNOUNCED_TAG in instance.get_run_by_id(result.run_id).tags  # type: ignore[union-attr]
    assert _tick(defs, instance, SUCCESS_SENSOR) == "Nothing to announce."
    assert _tick(defs, instance, FAILURE_SENSOR) == "Nothing to announce."
    assert len(local_stack.slack.messages()) == 1
    # The local Redshift password equals the bucket name, which every URI shows; it is not masked.
    secrets = {stack_env[name] for name in ("SLACK_BOT_TOKEN", "REDSHIFT_PASSWORD", "AWS_SECRET_ACCESS_KEY")}
    for secret in secrets - {stack_env["UNLOAD_BUCKET"]}:
        assert secret not in message["text"] + str(message["blocks"])


BROKEN_CATALOGUE = """
defaults: {format: csv, compression: gzip, header: true}
targets:
  - name: customers_snapshot
    description: Full customer list.
    sql: select customer_id, name from public.customers order by customer_id
    key_template: exports/customers/customers.csv.gz
  - name: vanished
    description: Reads a table that is not there.
    sql: select id from public.no_such_table
    key_template: exports/vanished/vanished.csv.gz
"""


def test_a_failed_run_is_announced_with_the_target_the_error_and_what_was_kept(
    instance: dg.DagsterInstance, local_stack: LocalStack, stack_env: dict[str, str], tmp_path: Path
) -> None:
    from unload_assets.component import build_definitions

    catalogue = tmp_path / "targets.yaml"
    catalogue.write_text(BROKEN_CATALOGUE)
    defs = build_definitions(catalogue)
    job = defs.resolve_job_def("unpartitioned_unloads")
    failed = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    local_stack.slack.clear()
    assert _tick(defs, instance, SUCCESS_SENSOR) == "Nothing to announce."
    assert _tick(defs, instance, FAILURE_SENSOR).startswith("Announced 1 of 1")
    [message] = local_stack.slack.messages()
    text = message["text"]
    assert "`vanished (unload)`" in text and "no_such_table" in text  # the target, and where it failed
    assert "*vanished* — no earlier delivery to keep" in text
    assert "*customers_snapshot* unpartitioned" in text and "customers.csv.gz" in text  # delivered anyway
    assert f"/runs/{failed.run_id}" in text and 'File "' not in text and "Traceback" not in text
