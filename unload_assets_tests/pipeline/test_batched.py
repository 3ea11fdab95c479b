"""Many targets in one pair of steps: each target delivered, failed, retried and re-run on its own.

The morning job as the schedule launches it (the code location's executor, steps forked from the warm
forkserver), 20 targets in one unload step and one rename step:
- one target reads a table that does not exist yet: the other 19 are delivered, checked and announced,
  and the failure names that target; once the table exists, "re-execute from asset failure" runs only
  that target, UNLOAD included;
- a dropped connection on one target's UNLOAD is retried for that target alone;
- materialising one target runs only that target's UNLOAD.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from unload_assets_local.stack import LocalStack

from unload_assets.component import build_definitions
from unload_assets_tests.support.fault_harness import (
    failed_targets,
    step_retries,
    target_retries,
    undelivered,
)
from unload_assets_tests.support.pipeline_helpers import environment, get_bytes, job_with_env
from unload_assets_tests.support.this_project import asset_key_for, configuration

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
TARGETS = 20
LATE = "b_07"  # reads public.batch_late, created only after the first run
CATALOGUE_ENV = "BATCH_TEST_CATALOGUE"
TARGET = """
  - name: b_{n:02d}
    description: slice {n} of the sales table
    sql: select sale_id, amount from {table} where mod(sale_id, {total}) = {n} order by sale_id
    key_template: exports/batched/{n:02d}.csv
    format: csv
"""


def batch_job(env: dict[str, str]) -> dg.JobDefinition:
    """The unpartitioned morning job of the catalogue `env` names, as the schedule runs it."""
    with environment(env):
        return build_definitions(env[CATALOGUE_ENV]).resolve_job_def("unpartitioned_unloads")


def _job(catalogue: Path):  # type: ignore[no-untyped-def]
    return job_with_env(__name__, "batch_job", {CATALOGUE_ENV: str(catalogue)})


def _expected(dsn: str) -> dict[int, list[list[str]]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select sale_id::text, coalesce(amount::text, '') from public.sales")
        rows = sorted((list(row) for row in cur.fetchall()), key=lambda r: int(r[0]))
    return {n: [r for r in rows if int(r[0]) % TARGETS == n] for n in range(TARGETS)}


def _delivered(s3, n: int) -> list[list[str]]:
    rows = csv.reader(io.StringIO(get_bytes(s3, BUCKET, f"exports/batched/{n:02d}.csv").decode()))
    return sorted(rows, key=lambda r: int(r[0]))


@pytest.fixture(scope="module")
def catalogue(local_stack: LocalStack, stack_env, tmp_path_factory) -> Iterator[Path]:
    body = "targets:" + "".join(
        TARGET.format(
            n=n, total=TARGETS, table="public.batch_late" if f"b_{n:02d}" == LATE else "public.sales"
        )
        for n in range(TARGETS)
    )
    path = tmp_path_factory.mktemp("batched") / "batched.yaml"
    path.write_text(body)
    dsn = local_stack.postgres.dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.batch_late")
    yield path
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.batch_late")
    s3 = local_stack.s3.client()
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/batched/").get("Contents", [])
    ]
    if keys:
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})


def test_one_failing_target_leaves_the_others_delivered_and_reexecution_runs_only_it(
    catalogue: Path, local_stack: LocalStack, tmp_path: Path
) -> None:
    from unload_assets.notify import run_sensors as sensors
    from unload_assets.resources.slack import UnloadSlackResource

    dsn, s3 = local_stack.postgres.dsn(), local_stack.s3.client()
    expected = _expected(dsn)
    job = _job(catalogue)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first = dg.execute_job(job, instance=instance)
        assert not first.success
        delivered = {e.asset_key for e in first.get_asset_materialization_events()}
        assert delivered == {asset_key_for(f"b_{n:02d}") for n in range(TARGETS)} - {asset_key_for(LATE)}
        for n in range(TARGETS):
            if f"b_{n:02d}" != LATE:
                assert _delivered(s3, n) == expected[n], n
        # Every delivered target was checked in the rename step; the failed one has no result.
        checked = {(c.asset_key, c.check_name): c.passed for c in first.get_asset_check_evaluations()}
        assert len(checked) == TARGETS - 1 and all(checked.values())  # one check each
        [(name, failure)] = failed_targets(first).items()
        assert name == LATE and failure["stage"] == "unload"
        assert "batch_late" in failure["error"] and "does not exist" in failure["error"]
        assert step_retries(first) == [] and target_retries(instance, first.run_id) == []  # final error

        # The failure message names the target and its error, and lists what was delivered anyway.
        slack = UnloadSlackResource(
            token=os.environ["SLACK_BOT_TOKEN"], channel=os.environ["SLACK_CHANNEL"],
            base_url=os.environ["SLACK_API_URL"],
        )  # fmt: skip
        local_stack.slack.clear()
        for status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS):
            sensors.announce(
                dg.build_sensor_context(instance=instance),
                slack,
                status,
                sensors.Watch(configuration(), None),
            )
        [message] = local_stack.slack.messages()
        assert f"{LATE} (unload)" in message["text"] and "batch_late" in message["text"]
        assert message["text"].count("exports/batched/") >= TARGETS - 1

        # Redshift gets the table; "from asset failure" selects exactly the target not delivered.
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("create table public.batch_late as select * from public.sales")
        assert undelivered(instance, first.run_id) == [asset_key_for(LATE)]
        before = {
            n: s3.head_object(Bucket=BUCKET, Key=f"exports/batched/{n:02d}.csv")["ETag"] for n in (0, 19)
        }
        second = dg.execute_job(job, instance=instance, asset_selection=undelivered(instance, first.run_id))
        assert second.success
        assert {e.asset_key for e in second.get_asset_materialization_events()} == {asset_key_for(LATE)}
        assert _delivered(s3, int(LATE[2:])) == expected[int(LATE[2:])]
        after = {
            n: s3.head_object(Bucket=BUCKET, Key=f"exports/batched/{n:02d}.csv")["ETag"] for n in (0, 19)
        }
        assert after == before  # nobody else was unloaded again
        logs = [e.user_message for e in instance.all_logs(second.run_id)]
        unloads = [m for m in logs if m.startswith("Running on")]  # each UNLOAD's statement, as it starts
        assert len(unloads) == 1 and f"/{LATE}/" in unloads[0]


def test_a_dropped_connection_is_retried_for_that_target_only(
    catalogue: Path, local_stack: LocalStack, tmp_path: Path
) -> None:
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("create table if not exists public.batch_late as select * from public.sales")
    drop = local_stack.emulator.faults.inject("drop", to_contains="/_staging/b_03/", times=1)
    try:
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            result = dg.execute_job(_job(catalogue), instance=instance)
            assert result.success
            retries = target_retries(instance, result.run_id)
            assert [(r.what, r.attempt) for r in retries] == [("UNLOAD of 'b_03'", 1)]
            assert step_retries(result) == []
            assert len(result.get_asset_materialization_events()) == TARGETS
    finally:
        local_stack.emulator.faults.clear()
    assert drop.fired == 1


def test_materialising_one_target_runs_only_its_unload(
    catalogue: Path, local_stack: LocalStack, tmp_path: Path
) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.execute_job(_job(catalogue), instance=instance, asset_selection=[asset_key_for("b_05")])
        assert result.success
        assert {e.asset_key for e in result.get_asset_materialization_events()} == {asset_key_for("b_05")}
        checks = {(c.asset_key, c.check_name) for c in result.get_asset_check_evaluations()}
        assert checks == {(asset_key_for("b_05"), "delivered")}
        unloads = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.user_message.startswith("Running on")
        ]
        assert len(unloads) == 1 and "/b_05/" in unloads[0]
