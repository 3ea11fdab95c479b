"""The 09:00 schedules: ticks across the DST changes of 2026/2027, previous day's partition, valid runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

# The daemon's own tick generator: what it computes is what production runs.
from dagster._utils.schedules import cron_string_iterator

from unload_assets.orchestration.schedules import build_morning_runs, previous_day, run_key
from unload_assets_tests.support.this_project import DAILY_JOB, UNPARTITIONED_JOB, configuration

# (zone, DST change dates): US changes on 2nd Sunday of March / 1st of November, the EU on last Sundays.
DST_CHANGES = [
    ("America/Los_Angeles", [date(2026, 3, 8), date(2026, 11, 1), date(2027, 3, 14), date(2027, 11, 7)]),
    ("Europe/Berlin", [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2027, 10, 31)]),
]
CASES = [(zone, day) for zone, days in DST_CHANGES for day in days]


def _assets(zone: str, starts: tuple[str, ...] = ("2024-01-01",), unpartitioned: bool = True) -> list:
    def make(name: str, partitions_def: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
        @dg.asset(key=["s3", name], group_name="unloads", partitions_def=partitions_def)
        def _asset(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
            partition = context.partition_key if context.has_partition_key else "unpartitioned"
            return dg.MaterializeResult(metadata={"partition": partition})

        return _asset

    defs = [dg.DailyPartitionsDefinition(start_date=s, timezone=zone) for s in starts]
    assets = [make(f"daily_{i}", p) for i, p in enumerate(defs)]
    return assets + ([make("snapshot", None)] if unpartitioned else [])


def _definitions(zone: str, **kwargs: object) -> tuple[dg.Definitions, list]:
    assets = _assets(zone, **kwargs)  # type: ignore[arg-type]
    runs = build_morning_runs(replace(configuration(), timezone=zone), assets)
    defs = dg.Definitions(assets=assets, jobs=[r.job for r in runs], schedules=[r.schedule for r in runs])
    return defs, runs


def _ticks(schedule: dg.ScheduleDefinition, first: date, days: int) -> list[datetime]:
    zone = ZoneInfo(schedule.execution_timezone or "UTC")
    start = datetime.combine(first, datetime.min.time(), zone).timestamp()
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)  # type: ignore[arg-type]
    return [next(ticks) for _ in range(days)]


@pytest.mark.parametrize(("zone", "change"), CASES, ids=[f"{z}-{d}" for z, d in CASES])
def test_ticks_stay_at_0900_local_and_request_the_previous_day(zone: str, change: date) -> None:
    defs, runs = _definitions(zone)
    repo = defs.get_repository_def()
    daily = next(r for r in runs if r.job.name == DAILY_JOB)
    job = defs.resolve_job_def(DAILY_JOB)
    ticks = _ticks(daily.schedule, change - timedelta(days=3), days=7)
    assert [t.date() for t in ticks] == [change - timedelta(days=3) + timedelta(days=i) for i in range(7)]
    offsets = {t.utcoffset() for t in ticks}
    assert len(offsets) == 2, "the week should straddle the DST change"
    for tick in ticks:
        local = tick.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0)
        result = daily.schedule.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=tick, repository_def=repo)
        )
        [request] = result.run_requests or []
        expected = (local.date() - timedelta(days=1)).isoformat()
        assert request.partition_key == expected
        assert request.run_key == f"daily-{expected}"
        assert job.partitions_def is not None
        with dg.partition_loading_context(effective_dt=tick):  # the newest complete day at the tick
            assert job.partitions_def.get_last_partition_key() == expected
        dg.validate_run_config(job, request.run_config)


def test_scheduled_run_request_executes_the_partition(tmp_path: object) -> None:
    defs, runs = _definitions("America/Los_Angeles")
    tick = datetime(2025, 11, 2, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles"))  # the day DST ended
    result = runs[0].schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    )
    [request] = result.run_requests or []
    with dg.instance_for_test() as instance:
        run = defs.resolve_job_def(DAILY_JOB).execute_in_process(
            run_config=request.run_config,
            partition_key=request.partition_key,
            instance=instance,
            tags=request.tags,
        )
        assert run.success
        [mat] = run.get_asset_materialization_events()
        assert mat.materialization.metadata["partition"].value == "2025-11-01"


def test_unpartitioned_targets_get_their_own_job_and_run_without_partition() -> None:
    defs, runs = _definitions("Europe/Berlin")
    assert [r.job.name for r in runs] == [DAILY_JOB, UNPARTITIONED_JOB]
    daily, unpartitioned = (defs.resolve_job_def(r.job.name) for r in runs)
    assert dg.AssetKey(["s3", "snapshot"]) not in daily.asset_layer.executable_asset_keys
    assert unpartitioned.asset_layer.executable_asset_keys == {dg.AssetKey(["s3", "snapshot"])}
    assert unpartitioned.partitions_def is None
    tick = datetime(2027, 3, 28, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    result = runs[1].schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    )
    [request] = result.run_requests or []
    assert request.partition_key is None and request.run_key == "daily-2027-03-27"
    assert unpartitioned.execute_in_process(
        run_config=request.run_config, instance=dg.DagsterInstance.ephemeral()
    ).success


def test_each_start_date_gets_a_job_because_dagster_refuses_mixed_partitions() -> None:
    defs, runs = _definitions("America/Los_Angeles", starts=("2025-06-01", "2020-01-01"), unpartitioned=False)
    assert [r.job.name for r in runs] == [f"{DAILY_JOB}_from_2020_01_01", f"{DAILY_JOB}_from_2025_06_01"]
    for r in runs:
        assert defs.resolve_job_def(r.job.name).partitions_def is not None
        assert r.schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert (r.schedule.cron_schedule, r.schedule.execution_timezone) == (
            "0 9 * * *",
            "America/Los_Angeles",
        )


def test_a_tick_before_the_first_partition_skips() -> None:
    defs, runs = _definitions("America/Los_Angeles", starts=("2026-11-23",), unpartitioned=False)
    tick = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    result = runs[0].schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    )
    assert not result.run_requests and "before the first partition" in (result.skip_message or "")


@pytest.mark.parametrize(
    ("when", "zone", "expected"),
    [
        # 09:00 Los Angeles is 17:00 UTC in winter, 16:00 in summer: both mean "yesterday" locally.
        (datetime(2026, 11, 2, 17, 0, tzinfo=ZoneInfo("UTC")), "America/Los_Angeles", date(2026, 11, 1)),
        (datetime(2026, 7, 1, 16, 0, tzinfo=ZoneInfo("UTC")), "America/Los_Angeles", date(2026, 6, 30)),
        # Just after midnight UTC is still the previous evening in Los Angeles.
        (datetime(2026, 7, 2, 0, 30, tzinfo=ZoneInfo("UTC")), "America/Los_Angeles", date(2026, 6, 30)),
        (datetime(2027, 3, 28, 9, 0), "Europe/Berlin", date(2027, 3, 27)),  # naive: already local
        (datetime(2027, 1, 1, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")), "Europe/Berlin", date(2026, 12, 31)),
    ],
)
def test_previous_day_is_computed_in_the_unload_timezone(when: datetime, zone: str, expected: date) -> None:
    assert previous_day(when, zone) == expected
    assert run_key(expected) == f"daily-{expected.isoformat()}"


def test_a_run_dagster_retries_reruns_only_the_targets_not_delivered() -> None:
    # run_retries in dagster.yaml re-execute a failed run with the strategy its tags name: from asset
    # failure, the undelivered targets with their UNLOAD (from failure would rerun the rename alone).
    defs, runs = _definitions("Europe/Berlin")
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(runs[1].job.name).execute_in_process(instance=instance)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags["dagster/retry_strategy"] == "FROM_ASSET_FAILURE"
