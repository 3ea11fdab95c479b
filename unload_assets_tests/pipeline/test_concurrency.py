"""Runs at the same time: many targets in one run, and one partition in two runs.

- 50 targets in one run, in batches of 10 (five unload steps), steps in up to 8 processes, the
  `redshift` pool limited to 2 slots and each unload step to 2 UNLOADs at once: at most 4 in flight.
  Every UNLOAD is held by the emulator until four are in flight, so that they overlap. The emulator
  counts the UNLOADs in flight.
- Two runs of the same day at once, whose outputs differ in content and in part count: the final key's
  lock in S3 makes their renames take turns, and what stays is one run's complete output.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time

import dagster as dg
import psycopg2
import pytest

from unload_assets.notify import run_sensors as sensors
from unload_assets.rename.lock import final_key_lock
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support import concurrency_jobs
from unload_assets_tests.support.fault_harness import wait_for_child
from unload_assets_tests.support.pipeline_helpers import get_bytes, job_with_env
from unload_assets_tests.support.this_project import REDSHIFT_POOL, asset_key_for, configuration

pytestmark = pytest.mark.stack

TARGETS = 50
POOL_LIMIT = 2  # unload steps at once
PER_STEP = 2  # UNLOADs at once in one unload step (UNLOAD_MAX_CONCURRENT)
CAP = POOL_LIMIT * PER_STEP
BUCKET = "unload-local"
TARGET = """
  - name: many_{n:02d}
    description: one of {total} targets that run at once
    sql: select sale_id, product, amount from public.sales where mod(sale_id, {total}) = {n}
    key_template: exports/many/{n:02d}.csv
    compression: none
"""


def test_fifty_targets_never_exceed_the_redshift_pool_and_one_message_lists_them_all(
    local_stack, stack_env, tmp_path, monkeypatch
):
    catalogue = tmp_path / "many.yaml"
    catalogue.write_text("targets:" + "".join(TARGET.format(n=n, total=TARGETS) for n in range(TARGETS)))
    env = {
        concurrency_jobs.CATALOGUE_ENV: str(catalogue),
        "UNLOAD_BATCH_SIZE": "10",
        "UNLOAD_MAX_CONCURRENT": str(PER_STEP),
    }
    job = job_with_env(concurrency_jobs.__name__, "many_targets_job", env)
    emulator = local_stack.emulator
    emulator.reset_peak()
    # Each UNLOAD is held until four are in flight (the cap is reached by a condition, whatever the
    # machine's speed; only the last few wait out the 8 s), then 0.3 s more, for a fifth to show.
    stall = emulator.faults.inject(
        "stall", seconds=8, until_active=CAP, grace=0.3, to_contains="/_staging/many_", times=TARGETS
    )
    overrides = {"concurrency": {"pools": {"granularity": "op"}}}
    try:
        with dg.instance_for_test(temp_dir=str(tmp_path), overrides=overrides) as instance:
            instance.event_log_storage.set_concurrency_slots(REDSHIFT_POOL, POOL_LIMIT)
            with dg.execute_job(job, instance=instance) as result:
                assert result.success
                materialised = {e.asset_key for e in result.get_asset_materialization_events()}
            info = instance.event_log_storage.get_concurrency_info(REDSHIFT_POOL)
            assert info.claimed_slots == [] and info.pending_steps == []  # every slot given back
            # One Slack message for the run, listing every one of the 50 deliveries.
            local_stack.slack.clear()
            slack = UnloadSlackResource(
                token=stack_env["SLACK_BOT_TOKEN"], channel=stack_env["SLACK_CHANNEL"],
                base_url=stack_env["SLACK_API_URL"],
            )  # fmt: skip
            sensors.announce(
                dg.build_sensor_context(instance=instance),
                slack,
                dg.DagsterRunStatus.SUCCESS,
                sensors.Watch(configuration(), None),
            )
            [message] = local_stack.slack.messages()
            blocks = json.dumps(message["blocks"])
            assert message["text"].startswith(":white_check_mark: Delivered: 50 unload targets")
            assert all(f"exports/many/{n:02d}.csv" in blocks for n in range(TARGETS))
    finally:
        emulator.faults.clear()

    assert stall.fired == TARGETS
    assert emulator.peak_concurrent_unloads == CAP  # reached, never exceeded
    assert materialised == {asset_key_for(f"many_{n:02d}") for n in range(TARGETS)}
    s3 = local_stack.s3.client()
    delivered = [
        list(csv.reader(io.StringIO(get_bytes(s3, BUCKET, f"exports/many/{n:02d}.csv").decode(), newline="")))
        for n in range(TARGETS)
    ]
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"select mod(sale_id, {TARGETS}), count(*) from public.sales group by 1")
        expected = dict(cur.fetchall())
    assert [len(rows) for rows in delivered] == [expected.get(n, 0) for n in range(TARGETS)]


DAY = "2026-11-22"
TWICE = """
targets:
  - name: twice
    description: the same day, run twice at once
    # Each UNLOAD takes the next number: odd runs unload 45,000 rows (3 staged files), even runs
    # 30,000 (2 files), so the two runs' outputs differ in content and in part count.
    sql: |
      with this_run as (select nextval('public.twice_seq') as n)
      select r.id, r.payload, this_run.n from public.twice_rows r, this_run
      where r.day = {{ partition_date }} and r.id <= case when this_run.n % 2 = 1 then 45000 else 30000 end
      order by r.id
    key_template: exports/twice/{date}/rows.csv
    compression: none
    max_file_size_mb: 5
    on_split: parts
    partitioning: {type: daily, start_date: 2026-11-01}
"""


def _one_complete_output(s3) -> int:
    """The run number whose output the final keys hold; fails on a mix, a gap or a manifest mismatch."""
    folder = f"exports/twice/{DAY}/"
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=folder)["Contents"]}
    manifest = json.loads(get_bytes(s3, BUCKET, folder + "rows.csv.manifest"))
    listed = {e["url"].split("/", 3)[3]: e["meta"]["content_length"] for e in manifest["entries"]}
    assert set(sizes) == {*listed, folder + "rows.csv.manifest"}, (sorted(sizes), sorted(listed))
    assert all(sizes[key] == size for key, size in listed.items())
    rows = [
        row
        for key in sorted(listed)
        for row in csv.reader(io.StringIO(get_bytes(s3, BUCKET, key).decode(), newline=""))
    ]
    runs = {row[2] for row in rows}
    assert len(runs) == 1, f"rows of runs {sorted(runs)} mixed"
    n = int(runs.pop())
    assert [int(row[0]) for row in rows] == list(range(1, (45000 if n % 2 else 30000) + 1))
    assert len(listed) == (3 if n % 2 else 2)
    return n


def _waiting_on(instance: dg.DagsterInstance, holder: str) -> set[str]:
    """Runs whose rename logged that it waits for the lock held by `holder`."""
    return {
        run.run_id
        for run in instance.get_runs()
        if any(f"held by {holder} " in entry.user_message for entry in instance.all_logs(run.run_id))
    }


def test_two_runs_of_the_same_partition_at_once_leave_one_complete_output(
    local_stack, stack_env, tmp_path, monkeypatch
):
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.twice_rows; drop sequence if exists public.twice_seq")
        cur.execute("create sequence public.twice_seq")
        cur.execute(
            "create table public.twice_rows as select g as id, repeat(md5(g::text), 8) as payload,"
            " date %s as day from generate_series(1, 45000) g",
            (DAY,),
        )
    catalogue = tmp_path / "twice.yaml"
    catalogue.write_text(TWICE)
    monkeypatch.setenv(concurrency_jobs.SAME_PARTITION_ENV, str(catalogue))
    s3 = local_stack.s3.client()
    final_key = f"exports/twice/{DAY}/rows.csv"
    lock_key = f"_staging/_locks/{final_key}.lock"
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        # A third party holds the final key's lock, so that both runs reach their rename and wait
        # side by side; once it lets go, the two runs rename the same key at the same time.
        with final_key_lock(s3, bucket=BUCKET, lock_key=lock_key, final_key=final_key, owner="a-third-run"):
            workers = [_fork_run(instance.get_ref()) for _ in range(2)]
            deadline = time.monotonic() + 120
            while len(_waiting_on(instance, "a-third-run")) < 2:
                assert time.monotonic() < deadline, "both runs should have reached the lock"
                assert all(os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in workers)
                time.sleep(0.2)
        statuses = [wait_for_child(pid, timeout=120) for pid in workers]
        assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses)
        runs = instance.get_runs()
        assert len(runs) == 2 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        checks = [
            evaluation
            for run in runs
            for record in instance.all_logs(run.run_id)
            if (evaluation := record.dagster_event and record.dagster_event.event_specific_data)
            and record.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        # Each run checks its own delivery. The run that renamed first finds its objects replaced by
        # the other run's complete output: that is reported as a warning naming the other run.
        failed = [check for check in checks if not check.passed]
        assert len(checks) == 2 and [check.check_name for check in failed] in ([], ["delivered"])
        for check in failed:
            assert check.severity == dg.AssetCheckSeverity.WARN
            assert "replaced_by_output_of" in check.metadata

    assert _one_complete_output(s3) in (1, 2)
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix="_staging/twice/").get("KeyCount", 0)
    lock = s3.list_objects_v2(Bucket=BUCKET, Prefix=lock_key).get("KeyCount", 0)
    assert (left, lock) == (0, 0)  # both runs cleaned their staging; the lock is released


def _fork_run(ref) -> int:
    pid = os.fork()
    if pid == 0:  # a run worker, like the one the run launcher would start
        status = 1
        try:
            with dg.DagsterInstance.from_ref(ref) as instance:
                result = dg.execute_job(
                    dg.reconstructable(concurrency_jobs.same_partition_job),
                    instance=instance,
                    tags={"dagster/partition": DAY},
                )
                status = 0 if result.success else 1
        finally:
            os._exit(status)
    return pid
