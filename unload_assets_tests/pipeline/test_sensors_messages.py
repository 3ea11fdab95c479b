"""What the Slack sensors say about a finished run: delivered, failed, cancelled, retried, re-executed, its
trigger, and never a secret. Against the real Slack stand-in and real runs (support/slack_sensors.py).
"""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest
from unload_assets_local.slack_standin import SlackStandIn

from unload_assets.notify import run_sensors as sensors
from unload_assets.notify import tick
from unload_assets.orchestration.schedules import build_morning_runs
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support.slack_sensors import (
    BUCKET,
    CHANNEL,
    TOKEN,
    Daemon,
    batch_with_failures,
    daily,
    flaky_job,
    materialize,
    materialize_tagged,
    texts,
)
from unload_assets_tests.support.this_project import TAGS, configuration

pytestmark = pytest.mark.usefixtures("webserver")  # the run links point at a known UI


def test_one_message_per_successful_run_with_uris_counts_and_link(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    first = materialize(instance, [daily("sales", rows=12_345)], "2025-11-21")
    second = materialize(instance, [daily("sales", rows=7), daily("orders", rows=3)], "2025-11-22")
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
    materialize(instance, [daily("orders", rows=5)], "2025-11-22")  # an earlier good delivery
    Daemon(instance).tick(slack)
    standin.clear()
    failed = materialize(
        instance, [daily("sales"), daily("orders", error="Target 'orders': relation \"x\" does not exist")]
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
    materialize(instance, [batch_with_failures("sales", failed)])
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


def test_a_cancelled_run_is_announced_as_cancelled(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    job = dg.Definitions(assets=[daily("sales")]).resolve_implicit_global_asset_job_def()
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
    failed = materialize(instance, [daily("sales", error="connection reset")], "2025-11-22")
    instance.add_run_tags(failed, {"dagster/will_retry": "true"})
    failure_sensor, success_sensor = Daemon(instance, "failure"), Daemon(instance)
    assert "1 failed run(s) wait for Dagster's retry" in failure_sensor.tick(slack)
    assert standin.messages() == []  # no "failed" that the retry would contradict
    retry = materialize_tagged(instance, "2025-11-22", {"dagster/retry_number": "1"})
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
    failed = materialize(instance, [daily("sales", error="connection reset")], "2025-11-22")
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
    failed = materialize(instance, [daily("sales", error="connection reset")], "2025-11-22")
    monkeypatch.setattr(type(instance), "run_retries_enabled", property(lambda _: True))
    daemon = Daemon(instance, "failure")
    assert "wait for Dagster's retry" in daemon.tick(slack)
    later = tick.now() + sensors.DECISION_WAIT.total_seconds() + 5
    monkeypatch.setattr(tick, "now", lambda: later)
    assert daemon.tick(slack) == f"Announced 1 of 1 run(s) ({failed[:8]})."


def test_a_retry_that_never_comes_is_announced_as_the_failure_it_is(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = materialize(instance, [daily("sales", error="connection reset")], "2025-11-22")
    instance.add_run_tags(failed, {"dagster/will_retry": "true"})
    daemon = Daemon(instance, "failure")
    assert "wait for Dagster's retry" in daemon.tick(slack)
    later = tick.now() + sensors.RETRY_WAIT.total_seconds() + 60
    monkeypatch.setattr(tick, "now", lambda: later)
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


def test_scheduled_job_runs_are_announced_with_their_trigger(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    assets = [daily("sales"), daily("orders")]
    [morning] = build_morning_runs(configuration(), assets)
    defs = dg.Definitions(assets=assets, jobs=[morning.job])
    tags = {"dagster/schedule_name": morning.schedule.name}
    defs.resolve_job_def(morning.job.name).execute_in_process(
        partition_key="2025-11-22", instance=instance, tags=tags
    )
    Daemon(instance).tick(slack)
    [message] = standin.messages()
    assert "daily_unloads" in message["text"] and "schedule daily_unloads_at_0900" in message["text"]


@pytest.mark.parametrize(
    ("tags", "label"),
    [
        ({"dagster/parent_run_id": "0123456789abcdef"}, "re-execution of 01234567"),
        ({"dagster/sensor_name": "upstream_landed"}, "sensor upstream_landed"),
        ({}, "launched by hand"),
    ],
)
# A backfill's runs are not announced one by one: its one message is test_sensors_backfill.py's.
def test_each_trigger_is_named_in_the_message(
    instance: dg.DagsterInstance,
    standin: SlackStandIn,
    slack: UnloadSlackResource,
    tags: dict[str, str],
    label: str,
) -> None:
    dg.materialize([daily("sales")], partition_key="2025-11-21", instance=instance, tags=tags)
    Daemon(instance).tick(slack)
    [message] = standin.messages()
    assert f" · {label} · " in message["text"] + json.dumps(message["blocks"])


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
    materialize(instance, [daily("sales", error=leak)])
    materialize(instance, [daily("orders")])
    reasons = [Daemon(instance, status).tick(slack) for status in ("success", "failure")]
    seen = json.dumps([texts(standin), reasons, [r.tags for r in instance.get_runs()]])
    assert len(standin.messages()) == 2 and "auth failed for ***" in seen
    for value in [*secrets.values(), TOKEN]:
        assert value not in seen
    assert os.environ["REDSHIFT_PASSWORD"] == secrets["REDSHIFT_PASSWORD"]


# ---- branches each shown to matter: a refused message, the tick budget, channel errors, triggers, expiry
