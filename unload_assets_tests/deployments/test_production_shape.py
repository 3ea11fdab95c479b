"""The deployment the README recommends, on one machine: deploy/dagster.yaml for real (PostgreSQL storage,
queued runs, the `redshift` pool, run monitoring, compute logs in S3), a gRPC code server, a webserver and
a daemon as separate processes in empty folders. The daemon fires the 09:00 schedule by itself (in a time
zone made for the test, where 09:00 is a minute after start-up). A run that fails at the rename is
re-executed from failure after the folder it ran in is gone, by a code server that never saw the first
attempt.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg2
import pytest
from unload_assets_local.s3_fault_proxy import FaultProxy

from unload_assets_tests.support.pipeline_helpers import decompress, get_bytes, write_catalogue
from unload_assets_tests.support.production import (
    ProductionShape,
    keep_logs,
    production_env,
    zone_where_9_am_is,
)
from unload_assets_tests.support.this_project import NAMES

pytestmark = [
    pytest.mark.production,
    pytest.mark.stack,
    pytest.mark.timeout(1800),
]  # above the sum of the test's own deadlines, which name what is late

BUCKET = "unload-local"
FINAL = "exports/prod/customers.csv.gz"
CATALOGUE = """
targets:
  - name: prod_customers
    description: A table that changes between runs; the production-shape test reads it.
    sql: select id, generation from public.prod_customers order by id
    key_template: exports/prod/customers.csv.gz
    format: csv
    compression: gzip
    header: true
"""


def _generation(dsn: str, generation: str) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "create table if not exists public.prod_customers (id int, generation text);"
            "truncate public.prod_customers;"
            "insert into public.prod_customers select g, %s from generate_series(1, 500) g",
            (generation,),
        )


def _delivered(s3) -> tuple[str, set[str]]:
    """The final object's ETag and the generations its rows carry (header checked)."""
    text = decompress(get_bytes(s3, BUCKET, FINAL), "gzip").decode()
    lines = text.splitlines()
    assert lines[0] == "id,generation" and len(lines) == 501
    return s3.head_object(Bucket=BUCKET, Key=FINAL)["ETag"], {line.split(",")[1] for line in lines[1:]}


def _slack_about(local_stack, run_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in local_stack.slack.messages() if run_id in (m.get("text") or "")]
        if found:
            assert len(found) == 1, found
            return str(found[0]["text"])
        time.sleep(1)
    raise AssertionError(f"no Slack message about run {run_id} within {timeout}s")


def _first_whole_minute_after(seconds: float) -> datetime:
    soon = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


@pytest.fixture(scope="module")
def production(
    local_stack, stack_env, tmp_path_factory
) -> Iterator[tuple[ProductionShape, FaultProxy, datetime]]:
    root = tmp_path_factory.mktemp("production")
    catalogue = write_catalogue(root, CATALOGUE, name="unload_targets.yaml")
    _generation(local_stack.postgres.dsn(), "gen0")
    # 09:00 comes after the processes have loaded (a few seconds) and the daemon has seen the schedule.
    nine = _first_whole_minute_after(20)
    zone, tz_path = zone_where_9_am_is(nine, root / "zoneinfo")
    env = production_env(
        local_stack, stack_env, database="dagster_production", catalogue=catalogue, zone=zone
    )
    env["PYTHONTZPATH"] = tz_path
    proxy = FaultProxy(local_stack.s3.endpoint_url).start()
    env["AWS_ENDPOINT_URL_S3"] = proxy.endpoint_url  # every S3 call of every process through the proxy
    shape = ProductionShape(root / "services", env)
    try:
        shape.start()
        assert shape.daemon_started and shape.daemon_started < nine, (
            f"the stack took past 09:00 ({nine}) to start"
        )
        with (root / "zoneinfo" / zone).open("rb") as tzif:
            morning = nine.astimezone(ZoneInfo.from_file(tzif))
        assert (morning.hour, morning.minute) == (9, 0)
        yield shape, proxy, morning
    finally:
        shape.stop()
        proxy.stop()
        keep_logs(root / "services", "production")


def test_runs_fail_and_reexecute_across_processes_that_share_only_postgres_and_s3(production, local_stack):
    shape, proxy, morning = production
    client, s3 = shape.client, local_stack.s3.client()
    dsn = local_stack.postgres.dsn()

    # 0. 09:00 in the schedules' zone: the daemon's scheduler launches the morning run by itself, with
    # the day's run key (the sensor's announcement of it is checked at the end, with the others).
    deadline = time.monotonic() + 180
    while not (scheduled := client.runs_tagged("dagster/schedule_name", "unpartitioned_unloads_at_0900")):
        assert time.monotonic() < deadline, "the daemon did not fire the 09:00 schedule within 180 s"
        time.sleep(2)
    assert len(scheduled) == 1
    yesterday = (morning - timedelta(days=1)).date()
    assert client.runs_tagged("dagster/run_key", f"daily-{yesterday.isoformat()}") == scheduled
    assert client.wait_for_run(scheduled[0]) == "SUCCESS"
    assert _delivered(s3)[1] == {"gen0"}

    # 1. A run launched as the UI does: queued, dequeued by the daemon, run by the code server's launcher.
    _generation(dsn, "gen1")
    first = client.launch("unpartitioned_unloads")
    assert client.wait_for_run(first) == "SUCCESS"
    etag, generations = _delivered(s3)
    assert generations == {"gen1"}

    # 2. The next run's rename meets a broken S3 until Dagster's retries give up: the run fails and the
    # previous delivery stays exactly as it was. (Launched without run retries, `dagster/max_retries` 0,
    # as an operator may for one run: this scenario is the failure and its re-execution by hand;
    # test_recovery.py has the retries.)
    _generation(dsn, "gen2")
    proxy.inject("error", operation="CompleteMultipartUpload", path_contains=f"/{FINAL}")
    second = client.launch("unpartitioned_unloads", tags={"dagster/max_retries": "0"})
    assert client.wait_for_run(second) == "FAILURE"
    proxy.clear()
    assert _delivered(s3) == (etag, {"gen1"})

    # 3. The machine that ran it is gone (its folder, its DAGSTER_HOME, everything on its disk); a new
    # code server elsewhere re-executes from failure: only the rename and the checks run, from the
    # handoff in S3 and the staged files of the failed run (gen2, not a new UNLOAD of gen3).
    _generation(dsn, "gen3")
    gone = shape.code_server
    gone.kill()
    shutil.rmtree(gone.dir)
    shape.start_code_server()
    shape.wait_until_listening()
    shape.reload_location()
    shape.wait_until_loaded()
    third = client.reexecute(second)
    assert client.wait_for_run(third) == "SUCCESS"
    steps = client.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { stepStats { stepKey status } } } }",
        {"id": third},
    )["runOrError"]["stepStats"]
    # Only the rename step ran again (its checks inside it), from the S3 handoff of the failed run.
    assert {s["stepKey"]: s["status"] for s in steps} == {
        f"{NAMES.graph('unpartitioned')}.{NAMES.rename_op('unpartitioned')}": "SUCCESS"
    }
    assert _delivered(s3)[1] == {"gen2"}
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="_staging/prod_customers/").get("KeyCount", 0) == 0
    # The daemon's sensors announced each run once, the re-execution too (its parent's announcement
    # tags, copied onto it, do not count).
    assert "Delivered: prod_customers" in _slack_about(local_stack, scheduled[0])
    assert "Delivered: prod_customers" in _slack_about(local_stack, first)
    failure = _slack_about(local_stack, second)
    assert "prod_customers" in failure and "rename" in failure
    assert "Delivered: prod_customers" in _slack_about(local_stack, third)
    assert f"re-execution of {second[:8]}" in _slack_about(local_stack, third)

    # Nothing any process needed was kept on its own disk: every folder holds only its dagster.yaml.
    for service in (shape.webserver, shape.daemon, *shape.code_servers[1:]):
        assert service.files_written() == [], (service.name, service.files_written())
