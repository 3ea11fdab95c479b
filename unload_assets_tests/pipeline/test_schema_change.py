"""Schema-change protection against the local stack: a column added, removed and retyped between two days.

Day 1 selects `id, amount numeric(10,2), region`; day 2 (another catalogue file, the same target)
selects `id, amount::numeric(12,2), discount`. `warn` delivers day 2 and says so in the metadata and the
Slack message; `fail` keeps the previous output untouched, keeps the staged files and names the columns,
and the documented action (re-execute from failure with the accept tag) delivers day 2.
"""

from __future__ import annotations

import re

import dagster as dg
import psycopg2
import pytest

from unload_assets.component import build_definitions
from unload_assets.notify import run_report
from unload_assets.orchestration.retries import retries_logged
from unload_assets.orchestration.schema_protection import ACCEPT_TAG
from unload_assets_tests.support.pipeline_helpers import (
    get_bytes,
    job_with_env,
    materialisation_metadata,
    materialise,
    write_catalogue,
)
from unload_assets_tests.support.this_project import NAMES, asset_key_for, configuration

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
DAY1, DAY2 = "2026-11-21", "2026-11-22"
SQL_DAY1 = "select id, amount, region from public.schema_moves where day = {{ partition_date }} order by id"
SQL_DAY2 = (
    "select id, amount::numeric(12,2) as amount, discount from public.schema_moves"
    " where day = {{ partition_date }} order by id"
)
CHANGE = "added discount (numeric(10,2)); removed region; retyped amount numeric(10,2) -> numeric(12,2)"
RENAME_STEP = f"{NAMES.graph('daily')}.{NAMES.rename_op('daily')}"


@pytest.fixture(scope="module")
def moves_table(local_stack, stack_env):
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.schema_moves")
        cur.execute(
            "create table public.schema_moves as select g as id,"
            f" date '{DAY1}' + mod(g, 2) as day,"
            " (g * 1.25)::numeric(10,2) as amount,"
            " ('r' || mod(g, 3))::varchar(20) as region,"
            " (g * 0.1)::numeric(10,2) as discount"
            " from generate_series(1, 40) g"
        )
    return "public.schema_moves"


def _catalogue(tmp_path, target: str, sql: str, on_schema_change: str, *, daily: bool = True):
    key = f"exports/schema/{target}/{{date}}.csv" if daily else f"exports/schema/{target}/latest.csv"
    partitioning = f"{{type: daily, start_date: '{DAY1[:8]}01'}}" if daily else "{type: none}"
    file_name = f"{target}_{'day2' if sql == SQL_DAY2 else 'day1'}.yaml"
    sql = sql if daily else sql.replace("{{ partition_date }}", f"date '{DAY1}'")
    body = f"""
targets:
  - name: {target}
    description: columns that move between days
    sql: "{sql}"
    key_template: {key}
    format: csv
    header: true
    partitioning: {partitioning}
    on_schema_change: {on_schema_change}
"""
    return write_catalogue(tmp_path, body, name=file_name)


def _header(s3, key: str) -> str:
    return get_bytes(s3, BUCKET, key).split(b"\n", 1)[0].decode()


def _staged(s3, target: str, day: str, run_id: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"_staging/{target}/{day}/{run_id}")
    return [o["Key"] for o in listing.get("Contents", [])]


def _absent(s3, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except s3.exceptions.ClientError:
        return True
    return False


def test_warn_delivers_the_new_columns_and_says_what_changed(local_stack, stack_env, moves_table, tmp_path):
    s3, target = local_stack.s3.client(), "moves_warn"
    day1, day2 = (
        _catalogue(tmp_path, target, SQL_DAY1, "warn"),
        _catalogue(tmp_path, target, SQL_DAY2, "warn"),
    )
    with dg.instance_for_test() as instance:
        first = materialisation_metadata(materialise(day1, target, partition=DAY1, instance=instance), target)
        assert "schema_change" not in first  # nothing delivered before: nothing to compare with

        result = materialise(day2, target, partition=DAY2, instance=instance)
        meta = materialisation_metadata(result, target)
        assert meta["schema_change"] == f"schema changed since the delivery of {DAY1}: {CHANGE}"
        assert meta["schema_change_columns"] == {
            "since": DAY1,
            "added": [{"name": "discount", "type": "numeric(10,2)"}],
            "removed": [{"name": "region", "type": "character varying(20)"}],
            "retyped": [{"name": "amount", "from": "numeric(10,2)", "to": "numeric(12,2)"}],
            "reordered": [],
            "accepted": False,
        }
        assert [c.name for c in meta["dagster/column_schema"].columns] == ["id", "amount", "discount"]
        assert _header(s3, f"exports/schema/{target}/{DAY2}.csv") == "id,amount,discount"  # delivered
        assert _staged(s3, target, DAY2) == []

        # The Slack message, from the run as the success sensor reads it.
        reading = run_report.read_run(instance, result.run_id, NAMES.target_of)
        record = instance.get_run_records(dg.RunsFilter(run_ids=[result.run_id]))[0]
        text = run_report.message_for(instance, record, reading, (), configuration().run_link).text
        assert text.startswith(f":white_check_mark: Delivered: {target} ({DAY2})")
        escaped = CHANGE.replace(">", "&gt;")  # mrkdwn; Slack shows "->"
        assert f":warning: schema changed since the delivery of {DAY1}: {escaped}" in text

        # The next delivery compares with this one: the same columns, no change.
        again = materialise(day2, target, partition=DAY2, instance=instance)
        assert "schema_change" not in materialisation_metadata(again, target)


def schema_job(env: dict[str, str]) -> dg.JobDefinition:
    """Module-level so that a re-execution can rebuild it in each step process, from `env`."""
    defs = build_definitions(env["SCHEMA_TEST_CATALOGUE"])
    job = dg.define_asset_job("schema_job", selection=[asset_key_for(env["SCHEMA_TEST_TARGET"])])
    defs = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job]
    )
    return defs.resolve_job_def("schema_job")


def test_fail_keeps_the_previous_output_names_the_columns_and_the_accept_tag_delivers(
    local_stack, stack_env, moves_table, tmp_path
):
    s3, target = local_stack.s3.client(), "moves_fail"
    day2 = _catalogue(tmp_path, target, SQL_DAY2, "fail")
    # Day 2 runs as a job a re-execution can rebuild (its steps in processes of their own); day 1 in-process.
    job = job_with_env(
        __name__, "schema_job", {"SCHEMA_TEST_CATALOGUE": str(day2), "SCHEMA_TEST_TARGET": target}
    )
    day1_key, day2_key = f"exports/schema/{target}/{DAY1}.csv", f"exports/schema/{target}/{DAY2}.csv"
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        materialise(_catalogue(tmp_path, target, SQL_DAY1, "fail"), target, partition=DAY1, instance=instance)
        delivered = get_bytes(s3, BUCKET, day1_key)

        with dg.execute_job(job, instance=instance, tags={"dagster/partition": DAY2}) as refused:
            assert not refused.success
            assert refused.get_asset_materialization_events() == []
        # Nothing final touched; the staged files (manifest included) and the handoff kept for a re-run.
        assert get_bytes(s3, BUCKET, day1_key) == delivered
        assert _absent(s3, day2_key)
        staged = _staged(s3, target, DAY2, refused.run_id)
        assert any(k.endswith("/manifest") for k in staged) and len(staged) >= 2
        step = f"{NAMES.graph('daily')}.{NAMES.unload_op('daily')}"
        handoff = f"_staging/_dagster/storage/{refused.run_id}/{step}/staged"
        assert s3.head_object(Bucket=BUCKET, Key=handoff)["ContentLength"] > 0

        # The failure names the target, the columns and how to accept them; it was not retried.
        reading = run_report.read_run(instance, refused.run_id, NAMES.target_of)
        failure = reading.failures[target]
        assert failure.step_key == f"{target} (schema)"
        assert failure.error.startswith(
            f"Target '{target}': schema changed since the delivery of {DAY1}: {CHANGE}."
        )
        assert f"{ACCEPT_TAG}={target}" in failure.error
        assert target not in reading.rename_failed  # nothing was renamed part-way
        logs = [entry.user_message for entry in instance.all_logs(refused.run_id)]
        assert retries_logged(logs) == []
        record = instance.get_run_records(dg.RunsFilter(run_ids=[refused.run_id]))[0]
        text = run_report.message_for(instance, record, reading, (), configuration().run_link).text
        assert text.startswith(":x: Unload run failed: schema_job")
        assert f"{target} (schema)" in text and CHANGE.replace(">", "&gt;") in text

        # The documented action: re-execute from failure with the accept tag. Only the rename runs again,
        # from the staged files of the refused run.
        options = dg.ReexecutionOptions.from_failure(refused.run_id, instance)
        tags = {"dagster/partition": DAY2, ACCEPT_TAG: target}
        with dg.execute_job(job, instance=instance, reexecution_options=options, tags=tags) as accepted:
            assert accepted.success
            assert {e.step_key for e in accepted.all_events if e.is_step_success} == {RENAME_STEP}
            meta = materialisation_metadata(accepted, target)
        assert meta["schema_change"] == f"schema changed since the delivery of {DAY1} (accepted): {CHANGE}"
        assert meta["schema_change_columns"]["accepted"] is True
        assert _header(s3, day2_key) == "id,amount,discount"
        assert get_bytes(s3, BUCKET, day1_key) == delivered
        assert _staged(s3, target, DAY2) == []
        [check] = accepted.get_asset_check_evaluations()
        assert check.check_name == "delivered" and check.passed, check.metadata["problems"]


def test_fail_leaves_an_unpartitioned_output_byte_for_byte(local_stack, stack_env, moves_table, tmp_path):
    """One key every day: the refused delivery would have replaced it."""
    s3, target = local_stack.s3.client(), "moves_snapshot"
    key = f"exports/schema/{target}/latest.csv"
    with dg.instance_for_test() as instance:
        materialise(_catalogue(tmp_path, target, SQL_DAY1, "fail", daily=False), target, instance=instance)
        delivered = get_bytes(s3, BUCKET, key)
        day2 = _catalogue(tmp_path, target, SQL_DAY2, "fail", daily=False)
        refused = materialise(day2, target, instance=instance, raise_on_error=False)
        assert not refused.success
        assert get_bytes(s3, BUCKET, key) == delivered
        failure = run_report.read_run(instance, refused.run_id, NAMES.target_of).failures[target]
        # Unpartitioned, the previous delivery is named by its time.
        since = re.search(r"schema changed since the delivery of (\S+ \S+ UTC): ", failure.error)
        assert since is not None and CHANGE in failure.error
        assert any(k.endswith("/manifest") for k in _staged(s3, target, "unpartitioned", refused.run_id))
