"""Two teams' instances in one project beside the host's own `s3` and `redshift` resources, on the local
stack: each instance's morning (its own run time and time zone) delivers its own targets to its own bucket
through its own staging prefix, and each Slack message goes to its own channel."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg2
import pytest
from dagster_aws.redshift import RedshiftClientResource
from dagster_aws.s3 import S3Resource
from unload_assets_local.stack import LocalStack

from unload_assets.assembly import build_instance
from unload_assets.component import UnloadTargets
from unload_assets.configuration import Configuration
from unload_assets_tests.support.pipeline_helpers import csv_rows, get_bytes
from unload_assets_tests.support.scratch_project import DAILY_SQL
from unload_assets_tests.support.sensor_daemon import SensorDaemon

pytestmark = pytest.mark.stack
DAY = date(2026, 11, 20)  # a partition the demo data has
CONNECTION = {
    name: f"{{{{ env.{variable} }}}}"
    for name, variable in {
        "host": "REDSHIFT_HOST", "port": "REDSHIFT_PORT", "database": "REDSHIFT_DATABASE",
        "user": "REDSHIFT_USER",
        "password": "REDSHIFT_PASSWORD", "sslmode": "REDSHIFT_SSLMODE", "sslrootcert": "REDSHIFT_SSLROOTCERT",
    }.items()
}  # fmt: skip


def _team(
    tmp_path: Path, name: str, bucket: str, channel: str, at: str, zone: str, **extra: object
) -> Configuration:
    catalogue = tmp_path / f"{name}.yaml"
    catalogue.write_text(
        f'targets:\n  - name: {name}_sales\n    description: {name}\'s sales.\n    sql: "{DAILY_SQL}"\n'
        f'    key_template: "{name}/{{date}}/sales.csv"\n'
        '    partitioning: {type: daily, start_date: "2026-01-01"}\n'
    )
    attributes = {
        "name": name,
        "catalogue": str(catalogue),
        "redshift": CONNECTION,
        "s3": {"bucket": bucket, "staging_prefix": f"_{name}_staging",
               "endpoint_url": "{{ env.AWS_ENDPOINT_URL_S3 }}", "iam_role": "default"},
        "slack": {"channel": channel, "token": "{{ env.SLACK_BOT_TOKEN }}",
                  "api_url": "{{ env.SLACK_API_URL }}"},
        "schedule": {"at": at, "timezone": zone},
        **extra,
    }  # fmt: skip
    return UnloadTargets.from_attributes_dict(attributes=attributes).configuration(tmp_path)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def test_each_instance_delivers_and_announces_on_its_own(
    tmp_path: Path, instance: dg.DagsterInstance, local_stack: LocalStack, stack_env: dict[str, str]
) -> None:
    s3 = local_stack.s3.client()
    s3.create_bucket(Bucket="marketing-exports")
    teams = {
        "finance": _team(
            tmp_path, "finance", stack_env["UNLOAD_BUCKET"], "#finance", "09:00", "America/Los_Angeles"
        ),
        "marketing": _team(
            tmp_path, "marketing", "marketing-exports", "#marketing", "07:00", "Europe/Berlin",
            declare_upstream_tables=False,
        ),
    }  # fmt: skip
    host_s3 = S3Resource(region_name="eu-west-1")
    host_redshift = RedshiftClientResource(host="host.example", user="h", password="x", database="h")
    defs = dg.Definitions.merge(
        *(build_instance(config) for config in teams.values()),
        dg.Definitions(resources={"s3": host_s3, "redshift": host_redshift}),
    )
    assert defs.resources is not None
    assert defs.resources["s3"] is host_s3 and defs.resources["redshift"] is host_redshift  # left alone
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from public.sales where sale_date = %s", (DAY,))
        expected = cur.fetchone()[0]  # type: ignore[index]
    local_stack.slack.clear()
    for team, config in teams.items():
        names = config.names
        schedule = defs.resolve_schedule_def(names.schedule(names.daily_job(), config.run_at))
        # The tick of the day after DAY, at the team's own local time: it asks for DAY.
        tick = datetime.combine(
            date.fromordinal(DAY.toordinal() + 1), config.run_at, ZoneInfo(config.timezone)
        )
        context = dg.build_schedule_context(
            scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
        assert request.partition_key == DAY.isoformat()
        result = defs.resolve_job_def(names.daily_job()).execute_in_process(
            partition_key=request.partition_key, instance=instance, tags=request.tags
        )
        assert result.success
        bucket = config.storage.bucket
        body = get_bytes(s3, bucket, f"{team}/{DAY}/sales.csv").decode()
        assert len(csv_rows(body, header=False)[1]) == expected
        assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"_{team}_staging/{team}_sales/").get("Contents")
        other = "marketing-exports" if team == "finance" else stack_env["UNLOAD_BUCKET"]
        assert not s3.list_objects_v2(Bucket=other, Prefix=f"{team}/").get("Contents")  # not in the other's
        slack = defs.resources[names.slack]
        assert "Announced 1 of 1" in SensorDaemon(
            instance, defs.resolve_sensor_def(names.success_sensor), None
        ).tick(slack)
    messages = local_stack.slack.messages()
    assert sorted(
        (m["channel"], "finance_sales" in m["text"], "marketing_sales" in m["text"]) for m in messages
    ) == [
        ("#finance", True, False),
        ("#marketing", False, True),
    ]
    assert {config.run_at for config in teams.values()} == {time(9), time(7)}
