"""The Slack sensors against the real Slack stand-in and a real DagsterInstance with real runs.

Runs come from small stand-in assets keyed `s3/<target>` in group `unloads` that record the same
metadata as the real rename op (stages.py). Ticks are evaluated as the daemon does: one after the
other, each with the cursor the previous one returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from unload_assets_local.slack_standin import SlackApiError as SlackApiErrorStandIn
from unload_assets_local.slack_standin import SlackStandIn

from unload_assets.delivery import FAILED_TARGETS
from unload_assets.orchestration import sensors
from unload_assets.orchestration.schedules import build_morning_runs
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support.sensor_daemon import SensorDaemon
from unload_assets_tests.support.this_project import TAGS, configuration

TOKEN = "xoxb-sensor-test-token-0123456789"
CHANNEL = "#unload-deliveries"
BUCKET = "unload-test"
DAY = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="America/Los_Angeles")


def _metadata(target: str, partition: str, rows: int) -> dict[str, Any]:
    key = f"exports/{target}/{partition}/{target}.csv.gz"
    return {
        "s3_uri": dg.MetadataValue.url(f"s3://{BUCKET}/{key}"),
        "final_objects": dg.MetadataValue.json([{"key": key, "size": 1000}]),
        "partition": partition,
        "rows": dg.MetadataValue.int(rows),
        "bytes": dg.MetadataValue.int(1000),
        "staged_files": dg.MetadataValue.int(1),
        "finalized_as": "single",
        "target": target,
    }


def _daily(target: str, rows: int = 10, *, error: str | None = None) -> dg.AssetsDefinition:
    @dg.asset(key=["s3", target], group_name="unloads", partitions_def=DAY)
    def _asset(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        if error:
            raise dg.Failure(description=error, allow_retries=False)
        return dg.MaterializeResult(metadata=_metadata(target, context.partition_key, rows))

    return _asset


def _batch_with_failures(delivered: str, failed: dict[str, dict[str, str]]) -> dg.AssetsDefinition:
    """Shaped like the real rename step: delivers one target, then fails naming the others
    (assets.FAILED_TARGETS: {target: {stage, error}})."""
    names = [delivered, *failed]

    @dg.multi_asset(
        specs=[dg.AssetSpec(["s3", n], group_name="unloads", skippable=True) for n in names],
        partitions_def=DAY,
        name="rename_daily",
    )
    def _batch(context):  # type: ignore[no-untyped-def]
        yield dg.MaterializeResult(
            asset_key=["s3", delivered], metadata=_metadata(delivered, context.partition_key, 10)
        )
        raise dg.Failure(
            description=f"{len(failed)} target(s) not delivered",
            metadata={FAILED_TARGETS: dg.MetadataValue.json(failed)},
            allow_retries=False,
        )

    return _batch


class Daemon(SensorDaemon):
    """The success (or failure) Slack sensor, evaluated as the daemon does."""

    def __init__(
        self, instance: dg.DagsterInstance, status: str = "success", cursor: str | None = None
    ) -> None:
        watch = sensors.Watch(configuration(), target_names=None)
        super().__init__(
            instance, next(s for s in sensors.notification_sensors(watch) if status in s.name), cursor
        )


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN, channels=[CHANNEL]) as stand_in:
        yield stand_in


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def slack(standin: SlackStandIn) -> UnloadSlackResource:
    return _slack(standin.base_url)


def _slack(base_url: str, token: str = TOKEN, channel: str = CHANNEL) -> UnloadSlackResource:
    return UnloadSlackResource(token=token, channel=channel, base_url=base_url)


@pytest.fixture(autouse=True)
def webserver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://dagster.test:3000/")


def _materialize(instance: dg.DagsterInstance, assets: list, partition: str | None = "2025-11-22") -> str:
    result = dg.materialize(assets, partition_key=partition, instance=instance, raise_on_error=False)
    return result.run_id


def _texts(standin: SlackStandIn) -> list[str]:
    return [m["text"] + json.dumps(m["blocks"]) for m in standin.messages()]


def test_one_message_per_successful_run_with_uris_counts_and_link(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    first = _materialize(instance, [_daily("sales", rows=12_345)], "2025-11-21")
    second = _materialize(instance, [_daily("sales", rows=7), _daily("orders", rows=3)], "2025-11-22")
    daemon = Daemon(instance)
    assert daemon.tick(slack).startswith("Announced 2 of 2 run(s)")
    one, two = standin.messages()
    assert all(m["channel"] == CHANNEL for m in standin.messages())
    assert f"http://dagster.test:3000/runs/{first}" in one["text"]  # oldest first
    assert f"s3://{BUCKET}/exports/sales/2025-11-21/sales.csv.gz" in one["text"]
    assert "12,345 rows" in one["text"] and "1,000 B" in one["text"] and "2025-11-21" in one["text"]
    assert f"http://dagster.test:3000/runs/{second}" in two["text"]
    for target in ("sales", "orders"):
        assert f"s3://{BUCKET}/exports/{target}/2025-11-22/{target}.csv.gz" in json.dumps(two["blocks"])
    assert instance.get_run_by_id(first).tags[TAGS.announced] == one["ts"]  # type: ignore[union-attr]
    for _ in range(3):
        assert daemon.tick(slack) == "Nothing to announce."
    assert len(standin.messages()) == 2


def test_one_message_per_failed_run_naming_step_error_and_what_was_left(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    _materialize(instance, [_daily("orders", rows=5)], "2025-11-22")  # an earlier good delivery
    Daemon(instance).tick(slack)
    standin.clear()
    failed = _materialize(
        instance, [_daily("sales"), _daily("orders", error="Target 'orders': relation \"x\" does not exist")]
    )
    success_daemon, failure_daemon = Daemon(instance), Daemon(instance, "failure")
    assert success_daemon.tick(slack) == "Nothing to announce."  # a failed run is not a success
    assert failure_daemon.tick(slack).startswith("Announced 1 of 1")
    [message] = standin.messages()
    text = message["text"]
    assert "s3__orders" in text and 'relation "x" does not exist' in text
    assert f"last complete delivery `s3://{BUCKET}/exports/orders/2025-11-22/orders.csv.gz`" in text
    assert f"s3://{BUCKET}/exports/sales/2025-11-22/sales.csv.gz" in text  # delivered in the run anyway
    assert f"/runs/{failed}" in text and "Traceback" not in text and 'File "' not in text
    assert failure_daemon.tick(slack) == "Nothing to announce."
    assert len(standin.messages()) == 1


def test_each_target_not_delivered_is_named_with_its_stage_and_error(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    failed = {
        "refunds": {"stage": "rename", "error": "RuntimeError: copy of part 2 failed: SlowDown"},
        "orders": {"stage": "unload", "error": "Redshift refused the UNLOAD (42P01): no such table"},
    }
    _materialize(instance, [_batch_with_failures("sales", failed)])
    Daemon(instance, "failure").tick(slack)
    [message] = standin.messages()
    text = message["text"]
    # Each target is named with the stage it failed in and its own error, not the shared step.
    assert "refunds (rename)`: RuntimeError: copy of part 2 failed" in text
    assert "orders (unload)`: Redshift refused the UNLOAD (42P01)" in text
    assert "rename_daily" not in text
    refunds = next(line for line in text.splitlines() if line.startswith("• *refunds*"))
    orders = next(line for line in text.splitlines() if line.startswith("• *orders*"))
    assert "staged files kept for a re-run" in refunds and "no earlier delivery" in refunds
    assert "staged files kept" not in orders
    assert f"s3://{BUCKET}/exports/sales/2025-11-22/sales.csv.gz" in text  # delivered in the run anyway


def test_an_outage_delays_messages_and_recovery_delivers_each_exactly_once(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    runs = [_materialize(instance, [_daily("sales")], f"2025-11-{day}") for day in (20, 21, 22)]
    # A 5xx may come after Slack acted, so it is never re-posted blindly: the first tick's post fails,
    # the next three ticks' history lookups fail, the fifth finds nothing and posts all three.
    standin.fail_next(4, status=500)
    daemon, reasons = Daemon(instance), []
    for _ in range(6):
        reasons.append(daemon.tick(slack))
    assert "HTTP 500" in reasons[0] and "Announced 0 of 3" in reasons[0]
    assert "looked up in the channel before any new post" in reasons[0]
    assert all("HTTP 500" in r and "Announced 0 of 3" in r for r in reasons[1:4])
    assert reasons[4].startswith("Announced 3 of 3") and reasons[5] == "Nothing to announce."
    assert [
        next(r for r in runs if r in m["text"]) for m in standin.messages()
    ] == runs  # once each, in order
    standin.fail_next(1, status=503)
    _materialize(instance, [_daily("sales")], "2025-11-23")
    assert "HTTP 503" in daemon.tick(slack)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    assert len(standin.messages()) == 4


def test_a_message_slack_took_but_never_answered_is_not_posted_again(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    run = _materialize(instance, [_daily("sales")], "2025-11-21")
    standin.lose_answers(1)  # Slack posts it; the connection closes before the answer
    daemon = Daemon(instance)
    lost = daemon.tick(slack)
    assert "Announced 0 of 1" in lost and "Slack unreachable" in lost
    [message] = standin.messages()
    assert TAGS.announced not in instance.get_run_by_id(run).tags  # type: ignore[union-attr]
    assert daemon.tick(slack) == "Announced 1 of 1 run(s); 1 found already in the channel, not posted again."
    assert len(standin.messages()) == 1
    tags = instance.get_run_by_id(run).tags  # type: ignore[union-attr]
    assert tags[TAGS.announced] == message["ts"] and tags[TAGS.channel] == message["channel_id"]
    assert message["metadata"] == {"event_type": "unload_assets_run", "event_payload": {"run_id": run}}
    assert daemon.tick(slack) == "Nothing to announce."


def test_no_post_without_an_attempt_tag_first(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Were the post made without the attempt on record, a lost answer could never be looked up.
    run = _materialize(instance, [_daily("sales")])
    real = instance.add_run_tags

    def broken(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(instance, "add_run_tags", real)
        raise ConnectionError("run storage unavailable")

    monkeypatch.setattr(instance, "add_run_tags", broken)
    daemon = Daemon(instance)
    assert f"could not tag run {run[:8]} before posting (ConnectionError)" in daemon.tick(slack)
    assert standin.messages() == []
    assert daemon.tick(slack).startswith("Announced 1 of 1") and len(standin.messages()) == 1


def test_a_crash_between_the_post_and_the_tag_repeats_nothing(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    # The tick that posted died before its tag write: only the attempt tag and Slack's copy remain.
    run = _materialize(instance, [_daily("sales")], "2025-11-21")
    instance.add_run_tags(run, {TAGS.attempt: f"{run}@{sensors._now():.3f}"})
    slack.post("posted by the tick that crashed", [], run_id=run)
    assert Daemon(instance).tick(slack).endswith("1 found already in the channel, not posted again.")
    assert [m["text"] for m in standin.messages()] == ["posted by the tick that crashed"]


def test_the_history_lookup_pages_through_a_busy_channel_and_takes_channel_ids(
    instance: dg.DagsterInstance, standin: SlackStandIn
) -> None:
    run = _materialize(instance, [_daily("sales")], "2025-11-21")
    by_id = _slack(standin.base_url, channel="C0DELIVERY")
    standin.lose_answers(1)
    Daemon(instance).tick(by_id)
    for n in range(450):  # other bots and people fill the channel after our message
        by_id.post(f"chatter {n}", [], run_id=f"someone-else-{n}")
    assert Daemon(instance).tick(by_id).endswith("1 found already in the channel, not posted again.")
    assert sum(run in m["text"] for m in standin.messages()) == 1


def test_without_history_access_a_run_is_posted_again_and_the_tick_says_so(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    run = _materialize(instance, [_daily("sales")], "2025-11-21")
    standin.lose_answers(1)
    daemon = Daemon(instance)
    daemon.tick(slack)
    standin.refuse("conversations.history", "missing_scope")
    reason = daemon.tick(slack)
    assert reason.startswith("Announced 1 of 1") and "give the bot channels:history" in reason
    assert "posted again, a duplicate is possible" in reason
    assert sum(run in m["text"] for m in standin.messages()) == 2  # at least once, never none
    standin.refuse("conversations.history", None)
    assert daemon.tick(slack) == "Nothing to announce."


def test_rate_limits_short_waits_inline_and_long_ones_across_ticks(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _materialize(instance, [_daily("sales")], "2025-11-21")
    standin.fail_next(1, status=429, retry_after=1)
    daemon = Daemon(instance)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    _materialize(instance, [_daily("sales")], "2025-11-22")
    standin.fail_next(1, status=429, retry_after=120)
    assert "Retry-After 120 s" in daemon.tick(slack)
    standin.fail_next(5, status=429, retry_after=120)  # were Slack called now, it would fail again
    assert "Slack asked us to wait until" in daemon.tick(slack)
    standin.fail_next(0)
    later = sensors._now() + 121
    monkeypatch.setattr(sensors, "_now", lambda: later)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    assert len(standin.messages()) == 2


def test_a_restart_with_a_new_sensor_and_a_lost_cursor_repeats_nothing(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    _materialize(instance, [_daily("sales")])
    _materialize(instance, [_daily("sales", error="boom")])
    for status in ("success", "failure"):
        Daemon(instance, status).tick(slack)
    assert len(standin.messages()) == 2
    for status in ("success", "failure"):  # fresh definitions, no cursor: the run tags carry the state
        assert Daemon(instance, status, cursor=None).tick(slack) == "Nothing to announce."
    assert len(standin.messages()) == 2


def test_a_missing_or_wrong_token_skips_clearly_then_delivers_once_fixed(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    run_id = _materialize(instance, [_daily("sales")])
    daemon = Daemon(instance)
    missing = _slack(standin.base_url, token="")
    reason = daemon.tick(missing)
    assert "slack.token not set" in reason and "1 success unload run(s) waiting" in reason
    wrong = _slack(standin.base_url, token="xoxb-wrong-token-4242")
    reason = daemon.tick(wrong)
    assert "Slack rejected slack.token (invalid_auth)" in reason and "xoxb-wrong-token-4242" not in reason
    no_channel = _slack(standin.base_url, channel="")
    assert "slack.channel not set" in daemon.tick(no_channel)
    assert standin.messages() == []
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    assert run_id in standin.messages()[0]["text"]


def test_an_unreachable_slack_is_reported_and_retried(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    _materialize(instance, [_daily("sales")])
    dead = SlackStandIn(token=TOKEN)  # a port nobody listens on
    unreachable = _slack(dead.base_url)
    daemon = Daemon(instance)
    assert "Slack unreachable (URLError" in daemon.tick(unreachable)
    assert daemon.tick(slack).startswith("Announced 1 of 1")


def test_an_outage_longer_than_a_day_loses_no_announcement_and_other_assets_stay_quiet(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dg.asset(key=["warehouse", "other"])
    def other() -> None:
        return None

    _materialize(instance, [other], None)
    daemon = Daemon(instance)
    assert daemon.tick(slack) == "Nothing to announce."  # the watermark is set
    run_id = _materialize(instance, [_daily("sales")])
    # The daemon was down over a long weekend: three days later the run is still found, once.
    later = sensors._now() + 3 * 24 * 3600
    monkeypatch.setattr(sensors, "_now", lambda: later)
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({run_id[:8]})."
    assert daemon.tick(slack) == "Nothing to announce."
    [message] = standin.messages()
    assert "sales" in message["text"] and "other" not in message["text"]


def test_a_sensor_started_for_the_first_time_does_not_announce_last_months_runs(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _materialize(instance, [_daily("sales")])
    later = sensors._now() + 25 * 3600
    monkeypatch.setattr(sensors, "_now", lambda: later)
    assert Daemon(instance).tick(slack) == "Nothing to announce."  # no cursor yet: a day back at most
    assert standin.messages() == []


def test_a_backlog_after_an_outage_is_one_catch_up_message_posted_exactly_once(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    days = [f"2025-11-{day:02d}" for day in range(1, 13)]  # 12 runs waiting: over the threshold of 10
    runs = [_materialize(instance, [_daily("sales")], day) for day in days]
    daemon = Daemon(instance, cursor=sensors.Cursor(since=0.0).dump())
    standin.lose_answers(1)  # Slack takes the summary but its answer never arrives
    first = daemon.tick(slack)
    assert "Announced 0 of 12" in first and "looked up in the channel" in first
    assert (
        daemon.tick(slack) == "Announced 12 of 12 run(s); 12 found already in the channel, not posted again."
    )
    [message] = standin.messages()
    assert message["text"].startswith(":hourglass: 12 success unload runs finished while announcements")
    assert all(day in message["text"] for day in days)
    assert {instance.get_run_by_id(r).tags[TAGS.announced] for r in runs} == {message["ts"]}  # type: ignore[union-attr]
    assert daemon.tick(slack) == "Nothing to announce."


def test_a_cancelled_run_is_announced_as_cancelled(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    job = dg.Definitions(assets=[_daily("sales")]).resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2025-11-22"})
    instance.report_run_canceling(run)
    instance.report_run_canceled(run)
    assert Daemon(instance, "failure").tick(slack) == f"Announced 1 of 1 run(s) ({run.run_id[:8]})."
    [message] = standin.messages()
    assert message["text"].startswith(":no_entry_sign: Unload run canceled:")
    assert "*sales* 2025-11-22 — no earlier delivery to keep" in message["text"]


def test_a_run_that_failed_before_its_plan_was_recorded_is_announced(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    # The daemon was killed between creating a backfill's run and recording its plan; run monitoring
    # failed the run once its start timed out. The day is not delivered: Slack must hear of it.
    run = instance.add_run(dg.DagsterRun(job_name="daily_unloads", tags={"dagster/partition": "2025-11-22"}))
    instance.report_run_failed(run, "Run timed out due to taking longer than 300 seconds to start.")
    # A failed run of another code location's job is not ours to announce.
    other = instance.add_run(dg.DagsterRun(job_name="someone_elses_job"))
    instance.report_run_failed(other, "not ours")
    daemon = Daemon(instance, "failure")
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({run.run_id[:8]})."
    [message] = standin.messages()
    assert message["text"].startswith(":x: Unload run failed: daily_unloads (2025-11-22)")
    assert "300 seconds to start" in message["text"]
    assert daemon.tick(slack) == "Nothing to announce."


def test_a_run_dagster_retries_is_announced_once_with_its_final_outcome(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    failed = _materialize(instance, [_daily("sales", error="connection reset")], "2025-11-22")
    instance.add_run_tags(failed, {"dagster/will_retry": "true"})
    failure_sensor, success_sensor = Daemon(instance, "failure"), Daemon(instance)
    assert "1 failed run(s) wait for Dagster's retry" in failure_sensor.tick(slack)
    assert standin.messages() == []  # no "failed" that the retry would contradict
    retry = _materialize_tagged(instance, "2025-11-22", {"dagster/retry_number": "1"})
    instance.add_run_tags(failed, {"dagster/auto_retry_run_id": retry})
    assert success_sensor.tick(slack) == f"Announced 1 of 1 run(s) ({retry[:8]})."
    assert failure_sensor.tick(slack) == "Nothing to announce."
    [message] = standin.messages()
    assert message["text"].startswith(":white_check_mark: Delivered: sales (2025-11-22) after 1 retry")


def test_a_failed_run_waits_for_dagsters_decision_to_retry_it(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With run retries on, Dagster writes a run's failure, then tags it `dagster/will_retry`: a tick in
    # between must not announce a failure the retry is about to contradict.
    failed = _materialize(instance, [_daily("sales", error="connection reset")], "2025-11-22")
    monkeypatch.setattr(type(instance), "run_retries_enabled", property(lambda _: True))
    daemon = Daemon(instance, "failure")
    assert "1 failed run(s) wait for Dagster's retry" in daemon.tick(slack)
    assert standin.messages() == []
    # Dagster decided not to retry it: announced at once.
    instance.add_run_tags(failed, {"dagster/will_retry": "false"})
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({failed[:8]})."


def test_a_failed_run_never_tagged_is_announced_after_the_decision_wait(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = _materialize(instance, [_daily("sales", error="connection reset")], "2025-11-22")
    monkeypatch.setattr(type(instance), "run_retries_enabled", property(lambda _: True))
    daemon = Daemon(instance, "failure")
    assert "wait for Dagster's retry" in daemon.tick(slack)
    later = sensors._now() + sensors.DECISION_WAIT.total_seconds() + 5
    monkeypatch.setattr(sensors, "_now", lambda: later)
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({failed[:8]})."


def test_a_retry_that_never_comes_is_announced_as_the_failure_it_is(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = _materialize(instance, [_daily("sales", error="connection reset")], "2025-11-22")
    instance.add_run_tags(failed, {"dagster/will_retry": "true"})
    daemon = Daemon(instance, "failure")
    assert "wait for Dagster's retry" in daemon.tick(slack)
    later = sensors._now() + sensors.RETRY_WAIT.total_seconds() + 60
    monkeypatch.setattr(sensors, "_now", lambda: later)
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({failed[:8]})."
    assert "connection reset" in standin.messages()[0]["text"]


def test_a_reexecution_that_delivers_after_a_failure_says_so(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource, tmp_path, monkeypatch
) -> None:
    flag = tmp_path / "fail"
    flag.write_text("x")
    monkeypatch.setenv("SENSOR_TEST_FAIL_FLAG", str(flag))
    job = dg.reconstructable(flaky_job)
    first = dg.execute_job(job, instance=instance, tags={"dagster/partition": "2025-11-22"})
    assert not first.success
    Daemon(instance, "failure").tick(slack)
    flag.unlink()
    options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
    partition = {"dagster/partition": "2025-11-22"}
    second = dg.execute_job(job, instance=instance, reexecution_options=options, tags=partition)
    assert second.success
    assert Daemon(instance).tick(slack) == f"Announced 1 of 1 run(s) ({second.run_id[:8]})."
    message = standin.messages()[-1]
    assert message["text"].startswith(
        f":white_check_mark: Delivered: sales (2025-11-22) after run {first.run_id[:8]} failed"
    )


def flaky_job() -> dg.JobDefinition:
    """Module level, for re-execution: fails while the flag file exists."""

    @dg.asset(key=["s3", "sales"], group_name="unloads", partitions_def=DAY)
    def sales(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        if os.path.exists(os.environ["SENSOR_TEST_FAIL_FLAG"]):
            raise dg.Failure(description="connection reset", allow_retries=False)
        return dg.MaterializeResult(metadata=_metadata("sales", context.partition_key, 10))

    flaky = dg.define_asset_job("flaky", selection=[sales.key])
    return dg.Definitions(assets=[sales], jobs=[flaky]).resolve_job_def("flaky")


def _materialize_tagged(instance: dg.DagsterInstance, partition: str, tags: dict[str, str]) -> str:
    result = dg.materialize([_daily("sales")], partition_key=partition, instance=instance, tags=tags)
    return result.run_id


def test_scheduled_job_runs_are_announced_with_their_trigger(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    assets = [_daily("sales"), _daily("orders")]
    [morning] = build_morning_runs(configuration(), assets)
    defs = dg.Definitions(assets=assets, jobs=[morning.job])
    tags = {"dagster/schedule_name": morning.schedule.name}
    defs.resolve_job_def(morning.job.name).execute_in_process(
        partition_key="2025-11-22", instance=instance, tags=tags
    )
    Daemon(instance).tick(slack)
    [message] = standin.messages()
    assert "daily_unloads" in message["text"] and "schedule daily_unloads_at_0900" in message["text"]


def test_inherited_announcement_tags_do_not_silence_a_run(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    # A re-execution copies its parent's tags, the parent's announcement included: the re-execution
    # must still be announced once, on its own account (found by the production-shape test).
    parent = _materialize(instance, [_daily("sales")], "2025-11-21")
    daemon = Daemon(instance)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    parent_tags = instance.get_run_by_id(parent).tags  # type: ignore[union-attr]
    assert parent_tags[TAGS.announced_run] == parent
    child = _materialize(instance, [_daily("sales")], "2025-11-21")
    inherited = {k: v for k, v in parent_tags.items() if k.startswith("unload_assets/")}
    instance.add_run_tags(child, inherited)
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({child[:8]})."
    assert instance.get_run_by_id(child).tags[TAGS.announced_run] == child  # type: ignore[union-attr]
    assert daemon.tick(slack) == "Nothing to announce."
    assert len(standin.messages()) == 2


def test_a_failed_tag_write_is_kept_in_the_cursor_and_never_reposted(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = _materialize(instance, [_daily("sales")])
    real, writes = instance.add_run_tags, []

    def broken(*args: Any, **kwargs: Any) -> None:  # the run storage hiccups once, right after the post
        writes.append(args[1])
        if len(writes) == 1:
            return real(*args, **kwargs)  # the attempt tag, before the post
        monkeypatch.setattr(instance, "add_run_tags", real)
        raise ConnectionError("run storage unavailable")

    monkeypatch.setattr(instance, "add_run_tags", broken)
    daemon = Daemon(instance)
    assert "could not tag run" in daemon.tick(slack)
    assert [set(tags) for tags in writes] == [
        {TAGS.attempt},
        {TAGS.announced, TAGS.announced_run, TAGS.channel},
    ]
    assert run_id in json.loads(daemon.cursor or "{}")["untagged"]
    assert daemon.tick(slack) == "Nothing to announce."
    assert TAGS.announced in instance.get_run_by_id(run_id).tags  # type: ignore[union-attr]
    assert len(standin.messages()) == 1


def test_no_secret_reaches_slack_the_skip_reason_or_the_tags(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = {
        "UNLOAD_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET",
        "REDSHIFT_PASSWORD": "pg-pass-1234",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    password, key = secrets["REDSHIFT_PASSWORD"], secrets["UNLOAD_SECRET_ACCESS_KEY"]
    leak = f"auth failed for {password} with {key} and {TOKEN}"
    _materialize(instance, [_daily("sales", error=leak)])
    _materialize(instance, [_daily("orders")])
    reasons = [Daemon(instance, status).tick(slack) for status in ("success", "failure")]
    seen = json.dumps([_texts(standin), reasons, [r.tags for r in instance.get_runs()]])
    assert len(standin.messages()) == 2 and "auth failed for ***" in seen
    for value in [*secrets.values(), TOKEN]:
        assert value not in seen
    assert os.environ["REDSHIFT_PASSWORD"] == secrets["REDSHIFT_PASSWORD"]


# ---- branches each shown to matter: a refused message, the tick budget, channel errors, triggers, expiry


def test_a_refused_message_is_skipped_while_the_next_goes_out(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource, monkeypatch
) -> None:
    bad = _materialize(instance, [_daily("sales")], "2025-11-21")
    good = _materialize(instance, [_daily("sales")], "2025-11-22")
    real_post = standin._post_message

    def picky(args: dict[str, Any]) -> dict[str, Any]:  # Slack refuses this one message, blocks or not
        if bad in json.dumps(args):
            raise SlackApiErrorStandIn("invalid_blocks")
        return real_post(args)

    monkeypatch.setattr(standin, "_post_message", picky)
    reason = Daemon(instance).tick(slack)
    assert reason == f"Announced 1 of 2 run(s) ({good[:8]}); Slack refused: {bad[:8]}: " + (
        "Slack refused the message (invalid_blocks)."
    )
    assert [good in m["text"] for m in standin.messages()] == [True]


def test_the_tick_budget_stops_posting_and_the_next_tick_goes_on(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for day in (20, 21):
        _materialize(instance, [_daily("sales")], f"2025-11-{day}")
    daemon = Daemon(instance)
    monkeypatch.setattr(sensors, "TICK_BUDGET_SECONDS", -1.0)  # used up before the first post
    assert daemon.tick(slack) == (
        "Announced 0 of 2 run(s); stopped: time budget of this tick used up; the rest is retried next tick."
    )
    assert standin.messages() == []
    monkeypatch.setattr(sensors, "TICK_BUDGET_SECONDS", 15.0)
    assert daemon.tick(slack).startswith("Announced 2 of 2")


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
def test_a_channel_slack_will_not_post_to_stops_the_tick_naming_the_variable(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource, error: str
) -> None:
    _materialize(instance, [_daily("sales")], "2025-11-21")
    standin.refuse("chat.postMessage", error)
    daemon = Daemon(instance)
    reason = daemon.tick(slack)
    assert (
        f"stopped: slack.channel '{CHANNEL}' cannot be posted to ({error}): fix it or invite the bot"
        in reason
    )
    standin.refuse("chat.postMessage", None)
    assert daemon.tick(slack).startswith("Announced 1 of 1") and len(standin.messages()) == 1


@pytest.mark.parametrize(
    ("tags", "label"),
    [
        ({"dagster/backfill": "kzqwbrtx"}, "backfill kzqwbrtx"),
        ({"dagster/parent_run_id": "0123456789abcdef"}, "re-execution of 01234567"),
        ({"dagster/sensor_name": "upstream_landed"}, "sensor upstream_landed"),
        ({}, "launched by hand"),
    ],
)
def test_each_trigger_is_named_in_the_message(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    tags: dict[str, str],
    label: str,
) -> None:
    dg.materialize([_daily("sales")], partition_key="2025-11-21", instance=instance, tags=tags)
    Daemon(instance).tick(slack)
    [message] = standin.messages()
    assert f" · {label} · " in message["text"] + json.dumps(message["blocks"])


def test_runs_waiting_to_be_retagged_are_dropped_only_long_after_the_lookback(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    # Runs deleted since Slack took their message: the tag can never be written. A recent one is kept
    # (the run storage may be back next tick); one older than twice the lookback is let go.
    now = sensors._now()
    recent, ancient = f"{now - 3600:.6f}", f"{now - 3 * sensors.LOOKBACK.total_seconds():.6f}"
    cursor = sensors.Cursor(untagged={"deleted-recently": recent, "deleted-long-ago": ancient}).dump()
    daemon = Daemon(instance, cursor=cursor)
    assert daemon.tick(slack) == "Nothing to announce."
    assert json.loads(daemon.cursor or "{}")["untagged"] == {"deleted-recently": recent}
