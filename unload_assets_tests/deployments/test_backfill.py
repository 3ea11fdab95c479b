"""A 30-day backfill through the daemon, launched as the UI launches one (GraphQL launchPartitionBackfill,
the asset page's Materialize of a range), on the production shape (support/production.py: PostgreSQL,
a code server, a webserver and a daemon as separate processes; deploy/dagster.yaml, run retries on).

Under the assets' BackfillPolicy it runs in runs of several days (`backfill_days_per_run` 8 here: 4
runs), every day delivered and recorded as its own partition with that day's rows (equal to the query
run directly per day). One day's data is bad for one target: that day alone fails, and Slack gets ONE
message for the whole backfill naming it. Once the data is fixed, the backfill page's "Re-execute" (from
failure) runs that day alone, and delivers it; no other day is redone; one more message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import psycopg2
import pytest

from unload_assets.delivery import Delivery
from unload_assets.resources.slack import MARKER_EVENT
from unload_assets_tests.support.catalogue_samples import bad_day_catalogue
from unload_assets_tests.support.pipeline_helpers import get_bytes, write_catalogue
from unload_assets_tests.support.production import ProductionShape, keep_logs, production_env
from unload_assets_tests.support.this_project import REDSHIFT_POOL, asset_key_for

pytestmark = [pytest.mark.production, pytest.mark.stack, pytest.mark.timeout(1500)]

BUCKET = "unload-local"
TODAY = datetime.now(timezone.utc).date()
DAYS = [TODAY - timedelta(days=40 - n) for n in range(30)]
BAD = DAYS[13]
DAYS_PER_RUN = 8
TARGETS = ("bf_rows", "bf_count")
CATALOGUE = bad_day_catalogue("bf", DAYS[0] - timedelta(days=5))
DEADLINE = 600  # seconds for a backfill to be done and announced


def _rows(day) -> int:
    return 2 + day.toordinal() % 5


@pytest.fixture(scope="module")
def shape(local_stack, stack_env, tmp_path_factory) -> Iterator[ProductionShape]:
    root = tmp_path_factory.mktemp("backfill")
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.bf_rows")
        cur.execute("create table public.bf_rows (id int, day date, divisor int)")
        for day in DAYS:
            cur.executemany(
                "insert into public.bf_rows values (%s, %s, %s)",
                [(n, day, 0 if day == BAD else 1) for n in range(1, _rows(day) + 1)],
            )
    catalogue = write_catalogue(root, CATALOGUE, name="unload_targets.yaml")
    env = production_env(local_stack, stack_env, database="dagster_backfill", catalogue=catalogue)
    env["UNLOAD_BACKFILL_DAYS_PER_RUN"] = str(DAYS_PER_RUN)
    shape = ProductionShape(root / "services", env)
    try:
        shape.start()
        with shape.instance() as instance:
            instance.event_log_storage.set_concurrency_slots(REDSHIFT_POOL, 2)  # two runs' UNLOADs at once
        yield shape
    finally:
        shape.stop()
        keep_logs(root / "services", "backfill")


def _marker(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != MARKER_EVENT:
        return None
    return (metadata.get("event_payload") or {}).get("run_id")


def _announced(local_stack, shape: ProductionShape, backfill_id: str) -> dict[str, Any]:
    """The backfill's one Slack message, once the daemon has finished the backfill and the sensor told it."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = [m for m in local_stack.slack.messages() if _marker(m) == f"backfill/{backfill_id}"]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert shape.daemon.alive(), shape.daemon.tail()
        time.sleep(2)
    raise AssertionError(
        f"backfill {backfill_id} not announced within {DEADLINE} s "
        f"(status {shape.client.backfill_status(backfill_id)}):\n{shape.daemon.tail()}"
    )


def _runs_of(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    """The runs the backfill launched (Dagster's retries of them, tagged `dagster/retry_number`, aside)."""
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    return [run for run in runs if "dagster/retry_number" not in run.tags]


def _latest(instance: dg.DagsterInstance, target: str, day: str) -> tuple[Delivery, int]:
    """The day's latest delivery of `target`, and how many materialisations that day has."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key_for(target), asset_partitions=[day]), limit=10
    ).records
    assert records, (target, day)
    materialization = records[0].asset_materialization
    assert materialization is not None
    return Delivery.from_metadata(materialization.metadata), len(records)


def test_a_30_day_backfill_is_a_few_runs_each_day_its_own_partition_one_message_and_a_failed_day_alone_after(
    shape: ProductionShape, local_stack
) -> None:
    s3, dsn, slack = local_stack.s3.client(), local_stack.postgres.dsn(), local_stack.slack
    before = len(slack.messages())  # the session's stand-in is shared with other modules
    keys = [list(asset_key_for(target).path) for target in TARGETS]
    backfill = shape.client.launch_asset_backfill(keys, [d.isoformat() for d in DAYS])
    message = _announced(local_stack, shape, backfill)

    with shape.instance() as instance:
        runs = _runs_of(instance, backfill)
        # In runs of several days, each a range; not a run per day.
        assert len(runs) == math.ceil(len(DAYS) / DAYS_PER_RUN), [r.tags for r in runs]
        assert all("dagster/asset_partition_range_start" in run.tags for run in runs)
        # Every (target, day) its own partition, with that day's rows, equal to the query run directly.
        for target in TARGETS:
            expected = {d.isoformat() for d in DAYS if (target, d) != ("bf_rows", BAD)}
            assert instance.get_materialized_partitions(asset_key_for(target)) == expected
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("select day, count(*) from public.bf_rows group by day")
            direct = {day.isoformat(): n for day, n in cur.fetchall()}
        for day in DAYS:
            delivery, _ = _latest(instance, "bf_count", day.isoformat())
            assert get_bytes(s3, BUCKET, delivery.final_key).decode().split(",") == [
                day.isoformat(),
                f"{direct[day.isoformat()]}\n",
            ]
            if day != BAD:
                delivery, _ = _latest(instance, "bf_rows", day.isoformat())
                assert delivery.rows == direct[day.isoformat()] == _rows(day)
                assert delivery.final_key == f"exports/bf/rows/{day}.csv"
                assert len(get_bytes(s3, BUCKET, delivery.final_key).decode().splitlines()) == delivery.rows

    # ONE Slack message for the whole backfill, naming the day that failed; none per run or per day.
    messages = slack.messages()[before:]
    assert [_marker(m) for m in messages] == [f"backfill/{backfill}"], [m["text"] for m in messages]
    assert message["text"].startswith(":x: Backfill finished: 59 of 60 target-days delivered, 1 not")
    assert f"*bf_rows* {BAD} (unload):" in message["text"] and "division by zero" in message["text"]
    assert f"*bf_count* 30 day(s): {DAYS[0]} … {DAYS[-1]}" in message["text"]
    assert f"/runs/b/{backfill}" in message["text"]

    # The data fixed, the backfill page's "Re-execute" runs the failed day alone and delivers it.
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("update public.bf_rows set divisor = 1 where day = %s", (BAD,))
    again = shape.client.reexecute_backfill(backfill)
    second = _announced(local_stack, shape, again)
    assert second["text"].startswith(f":white_check_mark: Backfill delivered: bf_rows, 1 day(s) ({BAD})")
    with shape.instance() as instance:
        [rerun] = _runs_of(instance, again)
        assert rerun.asset_selection == {asset_key_for("bf_rows")}
        planned = {rerun.tags.get(t) for t in ("dagster/partition", "dagster/asset_partition_range_start")}
        assert planned - {None} == {BAD.isoformat()}
        delivery, _ = _latest(instance, "bf_rows", BAD.isoformat())
        assert delivery.rows == _rows(BAD)
        assert instance.get_materialized_partitions(asset_key_for("bf_rows")) == {d.isoformat() for d in DAYS}
        # No other day was redone: each of them has the one materialisation of the first backfill's run.
        for day in DAYS:
            if day != BAD:
                for target in TARGETS:
                    latest, count = _latest(instance, target, day.isoformat())
                    run_ids = {r.run_id for r in _runs_of(instance, backfill)}
                    records = instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key_for(target), asset_partitions=[day.isoformat()]),
                        limit=10,
                    ).records
                    assert {r.run_id for r in records} <= run_ids | _retries(instance, backfill)
    assert [_marker(m) for m in slack.messages()[before:]] == [f"backfill/{backfill}", f"backfill/{again}"]


def _retries(instance: dg.DagsterInstance, backfill_id: str) -> set[str]:
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    return {run.run_id for run in runs if "dagster/retry_number" in run.tags}
