"""A backfill is announced once, in one message, whatever number of runs it took; exactly once when
Slack's answer is lost. Against the real Slack stand-in and real runs tagged as a backfill's
(support/slack_sensors.py). The backfill record itself is the daemon's: a backfill id with no record (as
here) reads as a backfill that launches nothing more; the whole path, through the daemon, is
deployments/test_backfill.py.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest
from unload_assets_local.slack_standin import SlackStandIn

from unload_assets.notify import messages
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support.slack_sensors import Daemon, daily, materialize_tagged
from unload_assets_tests.support.this_project import TAGS

pytestmark = pytest.mark.usefixtures("webserver")  # the links point at a known UI

BACKFILL = {"dagster/backfill": "kzqwbrtx"}


def _backfill(instance: dg.DagsterInstance, *, failing: str | None = None) -> list[str]:
    runs = []
    for day in ("2025-11-20", "2025-11-21", "2025-11-22"):
        if day == failing:
            result = dg.materialize(
                [daily("sales", error="Redshift refused the UNLOAD (22012): division by zero")],
                partition_key=day,
                instance=instance,
                tags=BACKFILL,
                raise_on_error=False,
            )
            runs.append(result.run_id)
        else:
            runs.append(materialize_tagged(instance, day, BACKFILL))
    return runs


def test_a_backfill_is_one_message_naming_the_days_delivered_and_the_day_that_failed(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    runs = _backfill(instance, failing="2025-11-21")
    success, failure = Daemon(instance, "success"), Daemon(instance, "failure")
    assert success.tick(slack) == "Nothing to announce."  # a run of it failed: the failure sensor's
    said = failure.tick(slack)
    assert "1 of 1 backfill(s) in one message each (kzqwbrtx)" in said, said
    [message] = standin.messages()
    text = message["text"] + json.dumps(message["blocks"])
    assert message["text"].startswith(":x: Backfill finished: 2 of 3 target-days delivered, 1 not: sales")
    assert "*sales* 2025-11-21 (run): Redshift refused the UNLOAD (22012): division by zero" in text
    assert "*sales* 2 day(s): 2025-11-20, 2025-11-22" in text
    assert "http://dagster.test:3000/runs/b/kzqwbrtx?tab=partitions" in text and "3 runs" in text
    assert message["metadata"] == {
        "event_type": "unload_assets_run",
        "event_payload": {"run_id": "backfill/kzqwbrtx"},
    }
    for run_id in runs:  # every run of it announced by that one message
        assert instance.get_run_by_id(run_id).tags[TAGS.announced] == message["ts"]  # type: ignore[union-attr]
    assert failure.tick(slack) == "Nothing to announce." and success.tick(slack) == "Nothing to announce."
    assert len(standin.messages()) == 1


def test_a_backfill_that_delivered_every_day_is_the_success_sensors_one_message(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    _backfill(instance)
    assert Daemon(instance, "failure").tick(slack) == "Nothing to announce."
    Daemon(instance, "success").tick(slack)
    [message] = standin.messages()
    assert message["text"].startswith(
        ":white_check_mark: Backfill delivered: sales, 3 day(s) (2025-11-20 … 2025-11-22)"
    )
    assert "*sales* 3 day(s): 2025-11-20 … 2025-11-22 · 30 rows" in message["text"]


def test_a_backfill_message_whose_answer_was_lost_is_found_and_not_posted_again(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    runs = _backfill(instance)
    standin.lose_answers(1)  # Slack posts it; the connection closes before the answer
    daemon = Daemon(instance, "success")
    lost = daemon.tick(slack)
    assert "0 of 1 backfill(s)" in lost and "Slack unreachable" in lost, lost
    assert all(TAGS.announced not in instance.get_run_by_id(r).tags for r in runs)  # type: ignore[union-attr]
    again = daemon.tick(slack)
    assert "1 of 1 backfill(s) in one message each (kzqwbrtx)" in again, again
    [message] = standin.messages()
    assert all(instance.get_run_by_id(r).tags[TAGS.announced] == message["ts"] for r in runs)  # type: ignore[union-attr]
    assert daemon.tick(slack) == "Nothing to announce."


def test_a_year_of_days_reads_as_ranges() -> None:
    days = [f"2025-01-{d:02d}" for d in range(1, 32) if d != 15] + ["2025-03-01"]
    assert messages.day_ranges(days) == "2025-01-01 … 2025-01-14, 2025-01-16 … 2025-01-31, 2025-03-01"
