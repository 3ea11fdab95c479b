"""The Redshift Data API mode (`REDSHIFT_AUTH=data_api`) against the local stack's AWS stand-in, whose
`redshift-data` runs each statement on the emulator (unload_assets_local/data_api.py).

A morning delivers what a direct morning delivers, byte for byte once decompressed; a statement Redshift
refuses fails its target by name, at once, with no secret in the error; a run interrupted mid-UNLOAD (as
Dagster interrupts a terminated run's step) sends CancelStatement and the emulator stops the query; a
re-execution from asset failure delivers the target that was not. One stack for the module, few runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from unload_assets_local.stack import LOCAL_CLUSTER, LOCAL_SECRET_ARN, LOCAL_WORKGROUP

from unload_assets_tests.support.fault_harness import undelivered
from unload_assets_tests.support.pipeline_helpers import (
    csv_rows,
    decompress,
    get_bytes,
    materialisation_metadata,
    write_catalogue,
)
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

DAY = "2026-11-20"
REPO = Path(__file__).resolve().parents[2]
KEYS = {  # key-based UNLOAD authorization, so the statements sent to the Data API hold secrets
    "UNLOAD_ACCESS_KEY_ID": "AKIAZZDATAAPICANARY1",
    "UNLOAD_SECRET_ACCESS_KEY": "zZdataApi/Canary+Secret=Key/0123456789abcdef",
}
CATALOGUE = """
defaults: {{format: csv, partitioning: {{type: daily, start_date: "2026-01-01"}}}}
targets:
  - name: dapi_sales_{mode}
    description: one day of sales, gzipped CSV with a header, combined into one object
    sql: |
      select sale_id, sale_date, customer_id, product, quantity, amount, note
      from public.sales where sale_date = {{{{ partition_date }}}} order by sale_id
    key_template: exports/dapi/{mode}/sales_{{date}}.csv.gz
    compression: gzip
    header: true
  - name: dapi_parts_{mode}
    description: one file per slice, kept as parts with a COPY manifest
    sql: select sale_id, amount from public.sales where sale_date = {{{{ partition_date }}}}
    key_template: exports/dapi/{mode}/parts_{{date}}.csv
    parallel: true
    on_split: parts
"""
BROKEN = """
  - name: dapi_broken
    description: reads a table that is not there
    sql: select id from public.dapi_no_such_table where {{ partition_date }} is not null
    key_template: exports/dapi/broken_{date}.csv
"""
SLOW = """
targets:
  - name: dapi_slow
    description: an UNLOAD that would run for ten minutes
    sql: select customer_id, pg_sleep(600)::text as slept from public.customers where customer_id = 1
    key_template: exports/dapi/slow.csv
"""


@pytest.fixture()
def data_api(monkeypatch, local_stack, stack_env):
    """Switch the environment to the Data API; `target` picks a cluster with DbUser, a cluster with a
    secret, or the Serverless workgroup. No password is given to the workers at all."""

    def use(target: str) -> None:
        monkeypatch.setenv("REDSHIFT_AUTH", "data_api")
        monkeypatch.delenv("REDSHIFT_PASSWORD")
        monkeypatch.delenv("REDSHIFT_HOST")
        for name in ("REDSHIFT_CLUSTER_IDENTIFIER", "REDSHIFT_WORKGROUP", "REDSHIFT_SECRET_ARN"):
            monkeypatch.delenv(name, raising=False)
        if target in ("cluster", "cluster_secret"):
            monkeypatch.setenv("REDSHIFT_CLUSTER_IDENTIFIER", LOCAL_CLUSTER)
        if target == "workgroup":
            monkeypatch.setenv("REDSHIFT_WORKGROUP", LOCAL_WORKGROUP)
        if target in ("cluster_secret", "workgroup"):
            monkeypatch.setenv("REDSHIFT_SECRET_ARN", LOCAL_SECRET_ARN)

    return use


def _run(
    catalogue: Path, targets: list[str], instance: dg.DagsterInstance, **kwargs
) -> dg.ExecuteInJobResult:
    from unload_assets.component import build_definitions

    defs = build_definitions(catalogue)
    keys = [asset_key_for(t) for t in targets]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    return job.execute_in_process(
        partition_key=DAY, asset_selection=keys, instance=instance, raise_on_error=False
    )


def _outputs(s3, mode: str) -> dict[str, bytes]:
    """The final objects of a mode, decompressed, keyed by their name without the mode."""
    listed = s3.list_objects_v2(Bucket="unload-local", Prefix=f"exports/dapi/{mode}/").get("Contents", [])
    found = {}
    for item in listed:
        data = get_bytes(s3, "unload-local", item["Key"])
        name = item["Key"].rsplit("/", 1)[1]
        found[name] = decompress(data, "gzip") if name.endswith(".gz") else data
    return found


def _etags(s3, mode: str) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket="unload-local", Prefix=f"exports/dapi/{mode}/")["Contents"]
    return {item["Key"]: item["ETag"] for item in listed}


def _failure_text(result: dg.ExecuteInJobResult) -> str:
    return "\n".join(
        repr(e.step_failure_data.error) + repr(e.step_failure_data.user_failure_data)
        for e in result.all_events
        if e.is_step_failure
    )


def test_a_morning_delivers_what_a_direct_one_does_and_a_refused_statement_fails_by_name(
    data_api, local_stack, s3, tmp_path, monkeypatch
):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNLOAD_IAM_ROLE")
    direct = write_catalogue(tmp_path, CATALOGUE.format(mode="direct"), name="direct.yaml")
    via_api = write_catalogue(tmp_path, CATALOGUE.format(mode="api") + BROKEN, name="api.yaml")
    calls = local_stack.aws.calls.copy()
    with dg.instance_for_test() as instance:
        baseline = _run(direct, ["dapi_sales_direct", "dapi_parts_direct"], instance)
        assert baseline.success
        assert local_stack.aws.calls["ExecuteStatement"] == calls["ExecuteStatement"]  # direct: no Data API

        data_api("cluster")
        result = _run(via_api, ["dapi_sales_api", "dapi_parts_api", "dapi_broken"], instance)

    assert not result.success  # the broken target fails the run at the end, the others delivered
    expected, delivered = _outputs(s3, "direct"), _outputs(s3, "api")
    assert sorted(expected) == sorted(delivered) and len(expected) >= 3  # one object, parts + manifest
    parts = [name for name in expected if ".part-" in name]
    assert len(parts) >= 2
    for name, data in expected.items():
        if not name.endswith(".manifest"):  # manifests name their own mode's keys
            assert delivered[name] == data, name
    for mode in ("direct", "api"):
        rows = materialisation_metadata(baseline if mode == "direct" else result, f"dapi_sales_{mode}")[
            "dagster/row_count"
        ]
        assert rows > 0
    assert (
        materialisation_metadata(result, "dapi_sales_api")["dagster/row_count"]
        == materialisation_metadata(baseline, "dapi_sales_direct")["dagster/row_count"]
    )
    # Each UNLOAD and its pg_last_unload_count() in one session: two ExecuteStatements per delivered target.
    api = local_stack.aws.data_api
    sessions = {}
    for statement in api.statements.values():
        sessions.setdefault(statement.session.id, []).append(statement.sql[:6].upper())
    assert sorted(v for v in sessions.values() if len(v) == 2) == [["UNLOAD", "SELECT"]] * 2

    error = _failure_text(result)
    assert "dapi_broken (unload)" in error and 'relation "public.dapi_no_such_table" does not exist' in error
    assert "Data API statement" in error
    broken = [s for s in api.statements.values() if "dapi_no_such_table" in s.sql]
    assert len(broken) == 1 and broken[0].status == "FAILED"  # refused at once, not retried
    assert "SECRET_ACCESS_KEY" in broken[0].sql  # the statement really held the keys ...
    for secret in KEYS.values():  # ... and nothing shows them
        assert secret not in error and secret not in repr(result.all_events)


def test_a_terminated_run_cancels_its_statement(data_api, local_stack, tmp_path):
    """The run's process gets SIGINT mid-UNLOAD, as Dagster interrupts a terminated run's step: the op
    sends CancelStatement and the emulator stops the query. The op re-raises the interrupt: Dagster's
    step retry policy then retries the step (in a process of its own this is where a terminated run
    stops), which shows that the interrupt was not swallowed as one target's failure."""
    data_api("workgroup")
    catalogue = write_catalogue(tmp_path, SLOW)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    api = local_stack.aws.data_api
    before = set(api.statements)
    script = (
        "import sys, dagster as dg\n"
        "from pathlib import Path\n"
        "from unload_assets_tests.support.pipeline_helpers import materialise\n"
        "materialise(Path(sys.argv[1]), 'dapi_slow', instance=dg.DagsterInstance.get(),\n"
        "            raise_on_error=False)\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    run = subprocess.Popen(
        [sys.executable, "-c", script, str(catalogue)], cwd=REPO, env=env, start_new_session=True
    )

    def unloads() -> list:
        return sorted((api.statements[i] for i in set(api.statements) - before), key=lambda s: s.created_at)

    def until(condition) -> None:
        for _ in range(1500):  # a bound against a hang, not a timing assertion
            assert run.poll() is None, "the run ended on its own"
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError("never happened")

    try:
        until(lambda: unloads() and unloads()[0].status == "STARTED")  # the UNLOAD runs on the emulator
        run.send_signal(signal.SIGINT)  # what Dagster sends a terminated run's process
        first = unloads()[0]
        until(lambda: first.status == "ABORTED")
        assert api.cancelled == [first.id]
        until(lambda: len(unloads()) == 2)  # the interrupt reached Dagster, which retries the step
        assert "/retry-1-attempt-0/" in unloads()[1].sql
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        for statement in unloads():
            if statement.status in ("SUBMITTED", "STARTED"):
                api.answer("CancelStatement", json.dumps({"Id": statement.id}).encode())
    assert first.sql.startswith("UNLOAD") and "pg_sleep(600)" in first.sql


def test_a_re_execution_from_asset_failure_delivers_the_target_that_failed(
    data_api, local_stack, s3, tmp_path
):
    """Through a cluster with a Secrets Manager secret: the first run's SELECT for one target reads a table
    that does not exist yet; once it does, the re-execution from asset failure runs that target alone."""
    data_api("cluster_secret")
    body = CATALOGUE.format(mode="reexec").replace(
        "from public.sales where", "from public.dapi_late_sales where", 1
    )
    catalogue = write_catalogue(tmp_path, body)
    api = local_stack.aws.data_api
    with dg.instance_for_test() as instance:
        first = _run(catalogue, ["dapi_sales_reexec", "dapi_parts_reexec"], instance)
        assert not first.success and "dapi_late_sales" in _failure_text(first)
        parts = _outputs(s3, "reexec")
        assert parts and all(".part-" in name or name.endswith(".manifest") for name in parts)
        etags = _etags(s3, "reexec")
        with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
            cur.execute("create table public.dapi_late_sales as select * from public.sales")
        try:
            again = undelivered(instance, first.run_id)
            assert again == [asset_key_for("dapi_sales_reexec")]
            before = set(api.statements)
            second = _run(catalogue, ["dapi_sales_reexec"], instance)
        finally:
            with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
                cur.execute("drop table public.dapi_late_sales")
    assert second.success
    new = [api.statements[i] for i in set(api.statements) - before]
    assert sorted(s.sql[:6].upper() for s in new) == ["SELECT", "UNLOAD"]
    assert all(s.where.get("SecretArn") == LOCAL_SECRET_ARN for s in new if s.where)
    delivered = _outputs(s3, "reexec")
    assert f"sales_{DAY}.csv.gz" in delivered
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from public.sales where sale_date = %s", (DAY,))
        (rows,) = cur.fetchone()
    header, lines = csv_rows(delivered[f"sales_{DAY}.csv.gz"].decode(), header=True)
    assert header and header[0] == "sale_id" and len(lines) == rows > 0
    assert materialisation_metadata(second, "dapi_sales_reexec")["dagster/row_count"] == rows
    unchanged = _etags(s3, "reexec")
    assert {k: v for k, v in unchanged.items() if k in etags} == etags  # the parts were not unloaded again
