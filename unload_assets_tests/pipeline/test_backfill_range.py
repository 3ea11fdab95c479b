"""A run of several days (what a backfill launches under the assets' BackfillPolicy), in-process.

Two daily targets over ten days in one run, the cluster's cap at two UNLOADs: every (target, day) is
its own UNLOAD (never more than two at once: the emulator holds each until two are in flight and counts
the peak), its own rename, and its own materialisation and checks recorded against its own day, with
that day's rows. One day's data is bad for one target: that (target, day) fails alone, named in the
step's failure; the others are delivered. Once the data is fixed, a run of that day alone delivers it
and touches no other day.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import psycopg2
import pytest

from unload_assets.component import build_definitions
from unload_assets.delivery import FAILED_TARGETS, Delivery
from unload_assets_tests.support.catalogue_samples import bad_day_catalogue
from unload_assets_tests.support.pipeline_helpers import environment, get_bytes, write_catalogue
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
TODAY = datetime.now(timezone.utc).date()
DAYS = [TODAY - timedelta(days=40 - n) for n in range(10)]
BAD = DAYS[6]
CAP = 2
CATALOGUE = bad_day_catalogue("range", DAYS[0] - timedelta(days=5))


def _rows_per_day(day: date) -> int:
    return 3 + (day.toordinal() % 5)  # 3 to 7 rows: each day its own count


@pytest.fixture()
def range_rows(local_stack) -> str:
    """`public.range_rows`: a few rows per day of DAYS, the divisor 0 on BAD (bad data for that day)."""
    dsn = local_stack.postgres.dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.range_rows")
        cur.execute("create table public.range_rows (id int, day date, divisor int)")
        for day in DAYS:
            divisor = 0 if day == BAD else 1
            cur.executemany(
                "insert into public.range_rows values (%s, %s, %s)",
                [(n, day, divisor) for n in range(1, _rows_per_day(day) + 1)],
            )
    return dsn


def _job(catalogue) -> dg.JobDefinition:
    defs = build_definitions(catalogue)
    job = defs.resolve_implicit_job_def_def_for_assets([asset_key_for("range_rows")])
    assert job is not None
    return job


def _range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def test_a_run_of_ten_days_unloads_each_day_apart_under_the_cap_and_records_each_day_as_its_partition(
    local_stack, stack_env, range_rows, tmp_path
):
    catalogue = write_catalogue(tmp_path, CATALOGUE)
    emulator = local_stack.emulator
    emulator.reset_peak()
    # Each UNLOAD is held until two are in flight, then 0.3 s more, for a third to show if one could.
    stall = emulator.faults.inject(
        "stall", seconds=8, until_active=CAP, grace=0.3, to_contains="/_staging/range_", times=2 * len(DAYS)
    )
    try:
        with environment({"UNLOAD_MAX_CONCURRENT": str(CAP)}), dg.instance_for_test() as instance:
            job = _job(catalogue)
            result = job.execute_in_process(
                instance=instance, tags=_range_tags(DAYS[0], DAYS[-1]), raise_on_error=False
            )
            assert not result.success
            peak = emulator.peak_concurrent_unloads
            recorded = {
                (e.asset_key, e.partition): e.step_materialization_data.materialization
                for e in result.get_asset_materialization_events()
            }
            checks = [
                e.event_specific_data
                for e in result.all_events
                if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ]
            [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
            failed = failure.step_failure_data.user_failure_data.metadata[FAILED_TARGETS].value

            # Each day is its own partition in the instance, as the asset's partition status shows it.
            for target in ("range_rows", "range_count"):
                materialised = instance.get_materialized_partitions(asset_key_for(target))
                expected = {d.isoformat() for d in DAYS if (target, d) != ("range_rows", BAD)}
                assert materialised == expected

            # Fixed, the bad day is run alone, as a single-partition run; no other day is redone.
            with psycopg2.connect(range_rows) as conn, conn.cursor() as cur:
                cur.execute("update public.range_rows set divisor = 1 where day = %s", (BAD,))
            again = job.execute_in_process(
                instance=instance,
                partition_key=BAD.isoformat(),
                asset_selection=[asset_key_for("range_rows")],
            )
            assert again.success
            redone = [(e.asset_key, e.partition) for e in again.get_asset_materialization_events()]
            assert redone == [(asset_key_for("range_rows"), BAD.isoformat())]
            assert BAD.isoformat() in instance.get_materialized_partitions(asset_key_for("range_rows"))
    finally:
        emulator.faults.clear()

    # The cap held inside the run of ten days (reached, never exceeded), every UNLOAD held by the fault.
    assert stall.fired == 2 * len(DAYS)
    assert peak == CAP
    # The bad (target, day) failed alone, by name; the 19 others were delivered, each its own record.
    assert list(failed) == [f"range_rows {BAD}"]
    assert failed[f"range_rows {BAD}"]["stage"] == "unload"
    assert (failed[f"range_rows {BAD}"]["target"], failed[f"range_rows {BAD}"]["partition"]) == (
        "range_rows",
        BAD.isoformat(),
    )
    assert "division by zero" in failed[f"range_rows {BAD}"]["error"]
    assert f"range_rows {BAD} (unload)" in failure.step_failure_data.user_failure_data.description
    assert len(recorded) == 2 * len(DAYS) - 1
    s3 = local_stack.s3.client()
    for (key, partition), materialization in recorded.items():
        delivery = Delivery.from_metadata(materialization.metadata)
        day = date.fromisoformat(partition)
        target = key.path[-1]
        assert (delivery.target, delivery.partition) == (target, partition)
        folder = "rows" if target == "range_rows" else "count"
        assert delivery.final_key == f"exports/range/{folder}/{day}.csv"
        assert f"'{day}'" in delivery.statement  # that day's UNLOAD, its own statement
        rows = list(csv.reader(io.StringIO(get_bytes(s3, BUCKET, delivery.final_key).decode())))
        if target == "range_rows":
            assert delivery.rows == len(rows) == _rows_per_day(day)  # the day's rows, not the range's
        else:
            assert rows == [[day.isoformat(), str(_rows_per_day(day))]] and delivery.rows == 1
    # Every delivered (target, day) has its check, recorded against its day, and it passes.
    by_day: dict[tuple[str, str | None], set[str]] = {}
    for check in checks:
        by_day.setdefault((check.asset_key.path[-1], check.partition), set()).add(check.check_name)
        assert check.passed, check
    assert set(by_day) == {(key.path[-1], partition) for key, partition in recorded}
    assert all(names == {"delivered"} for names in by_day.values())
