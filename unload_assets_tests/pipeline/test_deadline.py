"""The deadline sensor against the real Slack stand-in and a real DagsterInstance with real runs.

Runs come from small stand-in assets keyed `s3/<target>` (as in support/slack_sensors.py). Ticks are evaluated
as the daemon does, one after the other, each with the cursor the previous one returned; the sensor's
clock (`notify.tick.now`) is set to the moment each tick stands for, so deadlines pass without waiting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from unload_assets_local.slack_standin import SlackStandIn

from unload_assets.catalogue import UnloadTarget
from unload_assets.notify import deadline_sensor
from unload_assets.notify import tick as sensor_tick
from unload_assets.resources.slack import NOTICE_EVENT, UnloadSlackResource
from unload_assets_tests.support.sensor_daemon import SensorDaemon
from unload_assets_tests.support.this_project import configuration

TOKEN = "xoxb-deadline-test-token-0123456789"
CHANNEL = "#unload-deliveries"
TZ = "America/Los_Angeles"
DAY = dg.DailyPartitionsDefinition(start_date="2025-11-01", timezone=TZ)
RUN_DAY = date(2025, 11, 23)  # its 09:00 run materialises the partition below
PARTITION = "2025-11-22"
WEB = "http://dagster.test:3000"


def _at(hour: int, minute: int = 0, day: date = RUN_DAY) -> float:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(TZ)).timestamp()


def _target(name: str, deliver_by: str | None = "09:30", *, daily: bool = True) -> UnloadTarget:
    sql = "select * from public.t" + (" where d = {{ partition_date }}" if daily else "")
    fields: dict[str, Any] = {"name": name, "description": name, "sql": sql, "deliver_by": deliver_by}
    fields["key_template"] = f"exports/{name}/{{date}}.csv" if daily else f"exports/{name}.csv"
    if daily:  # the day before RUN_DAY's partition is before the first: no deadline of its own
        fields["partitioning"] = {"type": "daily", "start_date": PARTITION}
    return UnloadTarget.model_validate(fields)


def _asset(name: str, *, daily: bool = True, error: str | None = None, wait: threading.Event | None = None):
    @dg.asset(key=["s3", name], group_name="unloads", partitions_def=DAY if daily else None)
    def _it(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        if wait is not None:
            wait.wait(timeout=120)
        if error:
            raise dg.Failure(description=error, allow_retries=False)
        partition = context.partition_key if daily else "unpartitioned"
        uri = f"s3://unload-test/exports/{name}/{partition}.csv"
        return dg.MaterializeResult(metadata={"s3_uri": dg.MetadataValue.url(uri), "partition": partition})

    return _it


def flaky_job() -> dg.JobDefinition:
    """Module level, for re-execution: `sales` fails while the flag file exists."""

    @dg.asset(key=["s3", "sales"], group_name="unloads", partitions_def=DAY)
    def sales(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        if os.path.exists(os.environ["DEADLINE_TEST_FAIL_FLAG"]):
            raise dg.Failure(description='relation "public.sales" does not exist', allow_retries=False)
        return dg.MaterializeResult(
            metadata={"s3_uri": f"s3://unload-test/sales/{context.partition_key}.csv"}
        )

    job = dg.define_asset_job("flaky", selection=[sales.key], executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[sales], jobs=[job]).resolve_job_def("flaky")


class Daemon(SensorDaemon):
    """The deadline sensor, evaluated as the daemon does, each tick at a chosen time."""

    def __init__(self, instance: dg.DagsterInstance, targets: list[UnloadTarget], cursor: str | None = None):
        config = replace(configuration(), timezone=TZ)
        super().__init__(instance, deadline_sensor.build_deadline_sensor(config, targets), cursor)

    def tick(  # type: ignore[override]
        self, slack: UnloadSlackResource, at: float, monkeypatch: pytest.MonkeyPatch
    ) -> str:
        monkeypatch.setattr(sensor_tick, "now", lambda: at)
        return super().tick(slack)


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN, channels=[CHANNEL]) as stand_in:
        yield stand_in


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:  # sets DAGSTER_HOME, for a new process
        yield inst


@pytest.fixture
def slack(standin: SlackStandIn) -> UnloadSlackResource:
    return UnloadSlackResource(token=TOKEN, channel=CHANNEL, base_url=standin.base_url)


@pytest.fixture(autouse=True)
def webserver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", WEB)


def _texts(standin: SlackStandIn) -> list[str]:
    return [m["text"] for m in standin.messages()]


def _fail_then_deliver(instance: dg.DagsterInstance, flag: Path) -> tuple[str, Any]:
    """The day's run fails; returns its id and a function that re-executes it from failure, delivering."""
    flag.write_text("x")
    job = dg.reconstructable(flaky_job)
    first = dg.execute_job(job, instance=instance, tags={"dagster/partition": PARTITION})
    assert not first.success

    def deliver() -> str:
        flag.unlink()
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        second = dg.execute_job(
            job, instance=instance, reexecution_options=options, tags={"dagster/partition": PARTITION}
        )
        assert second.success
        return second.run_id

    return first.run_id, deliver


def test_a_failed_day_is_told_late_once_and_delivered_once_across_restarts(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DEADLINE_TEST_FAIL_FLAG", str(tmp_path / "fail"))
    failed, deliver = _fail_then_deliver(instance, tmp_path / "fail")
    targets = [_target("sales")]
    daemon = Daemon(instance, targets)
    assert daemon.tick(slack, _at(9, 29), monkeypatch).startswith("No deadline passed")
    assert standin.messages() == []

    told = daemon.tick(slack, _at(9, 31), monkeypatch)
    assert told.startswith("1 deadline(s) passed; told late: sales/2025-11-22")
    [late] = standin.messages()
    assert late["text"].startswith(
        f":alarm_clock: Late: sales {PARTITION} not delivered by 09:30 {TZ} (failed)"
    )
    assert f"<{WEB}/runs/{failed}|run {failed[:8]}> failed" in late["text"]
    assert 'relation "public.sales" does not exist' in late["text"]
    assert late["metadata"] == {
        "event_type": NOTICE_EVENT,
        "event_payload": {"notices": [f"late/sales/{PARTITION}"]},
    }
    for minute in (32, 40, 59):
        daemon.tick(slack, _at(9, minute), monkeypatch)
    restarted = Daemon(instance, [_target("sales")], cursor=daemon.cursor)
    assert restarted.tick(slack, _at(10, 5), monkeypatch).startswith("No deadline passed")
    assert len(standin.messages()) == 1

    delivered = deliver()
    assert "now delivered: sales/2025-11-22" in restarted.tick(slack, _at(10, 30), monkeypatch)
    landed = standin.messages()[1]
    assert landed["text"].startswith(f":white_check_mark: Now delivered: sales {PARTITION}, ")
    assert f"after its 09:30 {TZ} deadline" in landed["text"]
    assert f"<{WEB}/runs/{delivered}|Run {delivered[:8]}>" in landed["text"]
    assert f"s3://unload-test/sales/{PARTITION}.csv" in landed["text"]
    for at in (_at(10, 31), _at(12), _at(23, 59)):
        restarted.tick(slack, at, monkeypatch)
    again = Daemon(instance, [_target("sales")], cursor=restarted.cursor)
    again.tick(slack, _at(9, 29, date(2025, 11, 24)), monkeypatch)  # before the next day's deadline
    assert len(standin.messages()) == 2


def _tick_in_a_new_process(cursor: str | None, at: float, base_url: str) -> tuple[str, str]:
    """One evaluation in a process of its own: the sensor built afresh, the instance opened from
    DAGSTER_HOME, only the cursor carried over (what a restarted daemon has)."""
    script = f"""
import json, sys
from dataclasses import replace
import dagster as dg
from unload_assets.catalogue import UnloadTarget
from unload_assets.notify import deadline_sensor
from unload_assets.notify import tick as sensor_tick
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support.this_project import configuration
sensor_tick.now = lambda: {at!r}
target = UnloadTarget.model_validate(json.loads(sys.argv[1]))
config = replace(configuration(), timezone={TZ!r})
sensor = deadline_sensor.build_deadline_sensor(config, [target])
slack = UnloadSlackResource(token={TOKEN!r}, channel={CHANNEL!r}, base_url={base_url!r})
with dg.DagsterInstance.get() as instance:
    resources = {{config.names.slack: slack}}
    context = dg.build_sensor_context(instance=instance, cursor=sys.argv[2] or None, resources=resources)
    result = sensor.evaluate_tick(context)
print(json.dumps([result.skip_message or "", result.cursor]))
"""
    target = _target("sales").model_dump(mode="json")
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(target), cursor or ""],
        capture_output=True,
        text=True,
        check=True,
    )
    skip, new_cursor = json.loads(done.stdout.strip().splitlines()[-1])
    return skip, new_cursor


def test_a_daemon_restarted_in_a_new_process_repeats_nothing(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DEADLINE_TEST_FAIL_FLAG", str(tmp_path / "fail"))
    _, deliver = _fail_then_deliver(instance, tmp_path / "fail")
    daemon = Daemon(instance, [_target("sales")])
    daemon.tick(slack, _at(9, 31), monkeypatch)
    skip, cursor = _tick_in_a_new_process(daemon.cursor, _at(9, 45), standin.base_url)
    assert skip.startswith("No deadline passed") and len(standin.messages()) == 1
    deliver()
    skip, cursor = _tick_in_a_new_process(cursor, _at(10, 30), standin.base_url)
    assert "now delivered: sales/2025-11-22" in skip
    skip, cursor = _tick_in_a_new_process(cursor, _at(10, 31), standin.base_url)
    assert skip == "No deadline passed since the last tick; 0 target-day(s) told late await their delivery."
    assert [t.split(":")[1] for t in _texts(standin)] == ["alarm_clock", "white_check_mark"]


def test_a_message_slack_took_but_never_answered_is_not_posted_again(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DEADLINE_TEST_FAIL_FLAG", str(tmp_path / "fail"))
    _, deliver = _fail_then_deliver(instance, tmp_path / "fail")
    daemon = Daemon(instance, [_target("sales")])
    standin.lose_answers(1, method="chat.postMessage")  # Slack posts it; the answer never arrives
    lost = daemon.tick(slack, _at(9, 31), monkeypatch)
    assert "told late: none" in lost and "Slack unreachable" in lost
    assert len(standin.messages()) == 1
    assert "1 found already in the channel, not posted again" in daemon.tick(slack, _at(9, 32), monkeypatch)
    deliver()
    standin.lose_answers(1, method="chat.postMessage")
    assert "Slack unreachable" in daemon.tick(slack, _at(10), monkeypatch)
    found = daemon.tick(slack, _at(10, 1), monkeypatch)
    assert "now delivered: sales/2025-11-22; 1 found already in the channel" in found
    daemon.tick(slack, _at(10, 2), monkeypatch)
    assert [t.split(":")[1] for t in _texts(standin)] == ["alarm_clock", "white_check_mark"]


def test_a_tick_that_died_after_its_post_is_found_in_the_channel(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon was killed after Slack took the message and before the cursor was saved: the next
    # tick starts from the cursor before it, and finds the message by its metadata.
    daemon = Daemon(instance, [_target("sales")])
    before = daemon.cursor
    daemon.tick(slack, _at(9, 31), monkeypatch)
    restarted = Daemon(instance, [_target("sales")], cursor=before)
    assert "1 found already in the channel" in restarted.tick(slack, _at(9, 32), monkeypatch)
    assert len(standin.messages()) == 1


def test_never_launched_still_running_and_queued_are_told_and_each_lands_once(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    running = threading.Thread(
        target=dg.materialize,
        args=([_asset("sales", wait=release)],),
        kwargs={"partition_key": PARTITION, "instance": instance},
    )
    running.start()
    try:
        queued_job = dg.Definitions(
            assets=[_asset("refunds")], jobs=[dg.define_asset_job("refunds_job", selection=["s3/refunds"])]
        ).resolve_job_def("refunds_job")
        # Created, not started: what a run waiting in the queue looks like to the sensor.
        queued = instance.create_run_for_job(
            queued_job, tags={"dagster/partition": PARTITION}, status=dg.DagsterRunStatus.NOT_STARTED
        )
        started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        while not instance.get_run_records(started):  # the running run has started (planned its asset)
            running.join(timeout=0.1)
        daemon = Daemon(instance, [_target("sales"), _target("refunds"), _target("orders")])
        daemon.tick(slack, _at(9, 31), monkeypatch)
    finally:
        release.set()
        running.join()
    [late] = standin.messages()
    lines = {line.split("*")[1]: line for line in late["text"].splitlines() if line.startswith("• *")}
    assert late["text"].startswith(
        f":alarm_clock: Late: 3 unload targets not delivered by their deadline ({PARTITION})"
    )
    assert "still running, started <!date^" in lines["sales"]
    assert f"<{WEB}/runs/{queued.run_id}|run {queued.run_id[:8]}> queued since <!date^" in lines["refunds"]
    assert "never launched" in lines["orders"] and "/runs/" not in lines["orders"]
    assert "now delivered: sales/2025-11-22;" in daemon.tick(slack, _at(9, 40), monkeypatch)  # it finished
    dg.materialize([_asset("orders")], partition_key=PARTITION, instance=instance)
    dg.materialize([_asset("refunds")], partition_key=PARTITION, instance=instance)
    assert "now delivered: orders/2025-11-22, refunds/2025-11-22;" in daemon.tick(slack, _at(11), monkeypatch)
    assert standin.messages()[-1]["text"].startswith(
        ":white_check_mark: Now delivered: 2 unload targets that were late"
    )
    daemon.tick(slack, _at(12), monkeypatch)
    assert len(standin.messages()) == 3


def test_an_unpartitioned_target_owes_a_delivery_since_that_mornings_run(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(ZoneInfo(TZ))
    # A run day whose 09:00 has passed (deliveries from now on count for it), and the day after it.
    today = now.date() if now.time() >= time(9) else now.date() - timedelta(days=1)
    tomorrow = today + timedelta(days=1)
    customers = _asset("customers", daily=False)
    dg.materialize([customers], instance=instance)
    daemon = Daemon(instance, [_target("customers", "11:00", daily=False)])
    daemon.tick(slack, _at(11, 1, tomorrow), monkeypatch)  # what was delivered today does not count
    [late] = _texts(standin)
    assert late.startswith(
        f":alarm_clock: Late: customers {tomorrow} not delivered by 11:00 {TZ} (never launched)"
    )

    standin.clear()
    crm = _asset("crm", daily=False)
    daemon = Daemon(instance, [_target("crm", "09:01", daily=False)])
    daemon.tick(slack, _at(9, 2, today), monkeypatch)
    assert _texts(standin)[0].startswith(f":alarm_clock: Late: crm {today} not delivered by 09:01")
    dg.materialize([crm], instance=instance)  # after 09:00 of that day: it counts
    assert f"now delivered: crm/{today};" in daemon.tick(slack, _at(9, 3, today), monkeypatch)
    assert len(standin.messages()) == 2


def test_a_slack_outage_delays_the_alert_and_it_is_still_sent_once(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = Daemon(instance, [_target("sales")])
    standin.fail_next(3, status=503)
    down = daemon.tick(slack, _at(9, 31), monkeypatch)
    assert "HTTP 503" in down and "retried next tick" in down and standin.messages() == []
    standin.fail_next(0)
    assert "told late: sales/2025-11-22" in daemon.tick(slack, _at(9, 45), monkeypatch)
    daemon.tick(slack, _at(9, 46), monkeypatch)
    assert len(standin.messages()) == 1


def test_without_a_deliver_by_the_sensor_watches_nothing(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = Daemon(instance, [_target("sales", None)])
    assert daemon.tick(slack, _at(9, 31), monkeypatch) == "No target has a deliver_by: nothing to watch."
    assert standin.messages() == []
