"""A morning with broken catalogue entries, on the local stack: the good targets are delivered by the 09:00
run, each broken entry stays visible and fails with its reason, and the failure sensor tells each problem in
Slack exactly once — not again on the next tick, nor after a restart (new definitions, the kept cursor)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg2
import pytest
from unload_assets_local.stack import LocalStack

from unload_assets.assembly import build_instance, read_instance_catalogue
from unload_assets_tests.support.catalogue_samples import BAD, GOOD
from unload_assets_tests.support.pipeline_helpers import csv_rows, decompress, get_bytes
from unload_assets_tests.support.sensor_daemon import SensorDaemon
from unload_assets_tests.support.this_project import NAMES, configuration

pytestmark = pytest.mark.stack

# The four kinds of mistake at once, beside three good targets; each broken entry under its own name
# (the duplicate reuses `sales`, the name it duplicates).
BROKEN = GOOD + "".join(
    entry.replace("name: orders", f"name: orders_{n}") for n, (_, entry, _, _) in enumerate(BAD)
)
NOT_LOADED = {"orders_0", "orders_2", "orders_3"}  # a duplicate of `sales` has no asset of its own


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def _definitions(path: Path) -> dg.Definitions:
    config = configuration(path)
    return build_instance(config, read_instance_catalogue(config))


def test_the_good_targets_are_delivered_and_each_problem_is_told_once(
    tmp_path: Path, instance: dg.DagsterInstance, local_stack: LocalStack, stack_env: dict[str, str]
) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(BROKEN)
    defs = _definitions(path)
    graph = defs.resolve_asset_graph()
    keys = {k.path[-1] for k in graph.get_all_asset_keys() if k.path[0] == "s3"}
    assert keys == {"sales", "customers", "refunds"} | NOT_LOADED

    # The 09:00 runs, requested by the schedules as the daemon would, deliver the good targets.
    zone, s3, bucket = stack_env["UNLOAD_TIMEZONE"], local_stack.s3.client(), stack_env["UNLOAD_BUCKET"]
    now = datetime.now(ZoneInfo(zone))
    tick = now.replace(hour=9, minute=0, second=0, microsecond=0)
    tick = tick if now >= tick else tick - timedelta(days=1)
    for schedule in defs.schedules or []:
        context = dg.build_schedule_context(
            scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
        job = defs.resolve_job_def(schedule.job_name)
        assert not {k.path[-1] for k in job.asset_layer.selected_asset_keys} & NOT_LOADED
        result = job.execute_in_process(
            partition_key=request.partition_key, instance=instance, tags=request.tags
        )
        assert result.success
    day = (tick.date() - timedelta(days=1)).isoformat()
    sales = csv_rows(
        decompress(get_bytes(s3, bucket, f"exports/sales/{day}.csv"), "none").decode(), header=False
    )
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from public.sales where sale_date = %s", (day,))
        assert len(sales[1]) == cur.fetchone()[0]  # type: ignore[index]
    assert s3.head_object(Bucket=bucket, Key="exports/customers.csv")["ContentLength"] > 0

    # A broken entry fails at once with its reason when materialised.
    stand_in = next(a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)
                    and dg.AssetKey(["s3", "orders_3"]) in a.keys)  # fmt: skip
    failed = dg.materialize([stand_in], instance=instance, raise_on_error=False)
    assert not failed.success

    # The failure sensor tells each problem once.
    local_stack.slack.clear()
    slack = defs.get_repository_def().get_top_level_resources()[NAMES.slack]
    daemon = SensorDaemon(instance, defs.resolve_sensor_def(NAMES.failure_sensor), cursor=None)
    said = daemon.tick(slack)
    assert "Told 4 catalogue problem(s) in Slack" in said, said
    messages = [m["text"] for m in local_stack.slack.messages()]
    assert len(messages) == 4
    for name in NOT_LOADED:
        [text] = [t for t in messages if f"Target {name} is not loaded" in t]
        assert f"{path.resolve()}:" in text
    [duplicate] = [t for t in messages if "Catalogue problem" in t]
    assert "target 'sales', field 'name': duplicate (first on line 2)" in duplicate
    assert all(m["channel"] == stack_env["SLACK_CHANNEL"] for m in local_stack.slack.messages())
    # Its failed run is not told again as a run: the message about the entry says it all.
    assert said.startswith("Nothing to announce."), said
    assert daemon.tick(slack) == "Nothing to announce."
    restarted = SensorDaemon(
        instance, _definitions(path).resolve_sensor_def(NAMES.failure_sensor), daemon.cursor
    )
    assert restarted.tick(slack) == "Nothing to announce."
    assert len(local_stack.slack.messages()) == 4
