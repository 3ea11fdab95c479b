"""Each run announced exactly once, whatever Slack does: outages, lost answers, crashes between a post and
its tag, rate limits, a lost cursor, bad tokens, a backlog, the tick budget. Against the real Slack
stand-in and real runs (support/slack_sensors.py).
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
import pytest
from unload_assets_local.slack_standin import SlackApiError as SlackApiErrorStandIn
from unload_assets_local.slack_standin import SlackStandIn

from unload_assets.notify import tick
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support.slack_sensors import (
    CHANNEL,
    TOKEN,
    Daemon,
    daily,
    materialize,
    slack_at,
)
from unload_assets_tests.support.this_project import TAGS

pytestmark = pytest.mark.usefixtures("webserver")  # the run links point at a known UI


def test_an_outage_delays_messages_and_recovery_delivers_each_exactly_once(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    runs = [materialize(instance, [daily("sales")], f"2025-11-{day}") for day in (20, 21, 22)]
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
    materialize(instance, [daily("sales")], "2025-11-23")
    assert "HTTP 503" in daemon.tick(slack)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    assert len(standin.messages()) == 4


def test_a_message_slack_took_but_never_answered_is_not_posted_again(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    run = materialize(instance, [daily("sales")], "2025-11-21")
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
    run = materialize(instance, [daily("sales")])
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
    run = materialize(instance, [daily("sales")], "2025-11-21")
    instance.add_run_tags(run, {TAGS.attempt: f"{run}@{tick.now():.3f}"})
    slack.post("posted by the tick that crashed", [], run_id=run)
    assert Daemon(instance).tick(slack).endswith("1 found already in the channel, not posted again.")
    assert [m["text"] for m in standin.messages()] == ["posted by the tick that crashed"]


def test_the_history_lookup_pages_through_a_busy_channel_and_takes_channel_ids(
    instance: dg.DagsterInstance, standin: SlackStandIn
) -> None:
    run = materialize(instance, [daily("sales")], "2025-11-21")
    by_id = slack_at(standin.base_url, channel="C0DELIVERY")
    standin.lose_answers(1)
    Daemon(instance).tick(by_id)
    for n in range(450):  # other bots and people fill the channel after our message
        by_id.post(f"chatter {n}", [], run_id=f"someone-else-{n}")
    assert Daemon(instance).tick(by_id).endswith("1 found already in the channel, not posted again.")
    assert sum(run in m["text"] for m in standin.messages()) == 1


def test_without_history_access_a_run_is_posted_again_and_the_tick_says_so(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    run = materialize(instance, [daily("sales")], "2025-11-21")
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
    materialize(instance, [daily("sales")], "2025-11-21")
    standin.fail_next(1, status=429, retry_after=1)
    daemon = Daemon(instance)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    materialize(instance, [daily("sales")], "2025-11-22")
    standin.fail_next(1, status=429, retry_after=120)
    assert "Retry-After 120 s" in daemon.tick(slack)
    standin.fail_next(5, status=429, retry_after=120)  # were Slack called now, it would fail again
    assert "Slack asked us to wait until" in daemon.tick(slack)
    standin.fail_next(0)
    later = tick.now() + 121
    monkeypatch.setattr(tick, "now", lambda: later)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    assert len(standin.messages()) == 2


def test_a_restart_with_a_new_sensor_and_a_lost_cursor_repeats_nothing(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    materialize(instance, [daily("sales")])
    materialize(instance, [daily("sales", error="boom")])
    for status in ("success", "failure"):
        Daemon(instance, status).tick(slack)
    assert len(standin.messages()) == 2
    for status in ("success", "failure"):  # fresh definitions, no cursor: the run tags carry the state
        assert Daemon(instance, status, cursor=None).tick(slack) == "Nothing to announce."
    assert len(standin.messages()) == 2


def test_a_missing_or_wrong_token_skips_clearly_then_delivers_once_fixed(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    run_id = materialize(instance, [daily("sales")])
    daemon = Daemon(instance)
    missing = slack_at(standin.base_url, token="")
    reason = daemon.tick(missing)
    assert "slack.token not set" in reason and "1 success unload run(s) waiting" in reason
    wrong = slack_at(standin.base_url, token="xoxb-wrong-token-4242")
    reason = daemon.tick(wrong)
    assert "Slack rejected slack.token (invalid_auth)" in reason and "xoxb-wrong-token-4242" not in reason
    no_channel = slack_at(standin.base_url, channel="")
    assert "slack.channel not set" in daemon.tick(no_channel)
    assert standin.messages() == []
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    assert run_id in standin.messages()[0]["text"]


def test_an_unreachable_slack_is_reported_and_retried(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    materialize(instance, [daily("sales")])
    dead = SlackStandIn(token=TOKEN)  # a port nobody listens on
    unreachable = slack_at(dead.base_url)
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

    materialize(instance, [other], None)
    daemon = Daemon(instance)
    assert daemon.tick(slack) == "Nothing to announce."  # the watermark is set
    run_id = materialize(instance, [daily("sales")])
    # The daemon was down over a long weekend: three days later the run is still found, once.
    later = tick.now() + 3 * 24 * 3600
    monkeypatch.setattr(tick, "now", lambda: later)
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
    materialize(instance, [daily("sales")])
    later = tick.now() + 25 * 3600
    monkeypatch.setattr(tick, "now", lambda: later)
    assert Daemon(instance).tick(slack) == "Nothing to announce."  # no cursor yet: a day back at most
    assert standin.messages() == []


def test_a_backlog_after_an_outage_is_one_catch_up_message_posted_exactly_once(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    days = [f"2025-11-{day:02d}" for day in range(1, 13)]  # 12 runs waiting: over the threshold of 10
    runs = [materialize(instance, [daily("sales")], day) for day in days]
    daemon = Daemon(instance, cursor=tick.SensorCursor(since=0.0).dump())
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


def test_inherited_announcement_tags_do_not_silence_a_run(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    # A re-execution copies its parent's tags, the parent's announcement included: the re-execution
    # must still be announced once, on its own account (found by the production-shape test).
    parent = materialize(instance, [daily("sales")], "2025-11-21")
    daemon = Daemon(instance)
    assert daemon.tick(slack).startswith("Announced 1 of 1")
    parent_tags = instance.get_run_by_id(parent).tags  # type: ignore[union-attr]
    assert parent_tags[TAGS.announced_run] == parent
    child = materialize(instance, [daily("sales")], "2025-11-21")
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
    run_id = materialize(instance, [daily("sales")])
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


def test_a_refused_message_is_skipped_while_the_next_goes_out(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource, monkeypatch
) -> None:
    bad = materialize(instance, [daily("sales")], "2025-11-21")
    good = materialize(instance, [daily("sales")], "2025-11-22")
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
        materialize(instance, [daily("sales")], f"2025-11-{day}")
    daemon = Daemon(instance)
    monkeypatch.setattr(tick, "TICK_BUDGET_SECONDS", -1.0)  # used up before the first post
    assert daemon.tick(slack) == (
        "Announced 0 of 2 run(s); stopped: time budget of this tick used up; the rest is retried next tick."
    )
    assert standin.messages() == []
    monkeypatch.setattr(tick, "TICK_BUDGET_SECONDS", 15.0)
    assert daemon.tick(slack).startswith("Announced 2 of 2")


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
def test_a_channel_slack_will_not_post_to_stops_the_tick_naming_the_variable(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource, error: str
) -> None:
    materialize(instance, [daily("sales")], "2025-11-21")
    standin.refuse("chat.postMessage", error)
    daemon = Daemon(instance)
    reason = daemon.tick(slack)
    assert (
        f"stopped: slack.channel '{CHANNEL}' cannot be posted to ({error}): fix it or invite the bot"
        in reason
    )
    standin.refuse("chat.postMessage", None)
    assert daemon.tick(slack).startswith("Announced 1 of 1") and len(standin.messages()) == 1


def test_runs_waiting_to_be_retagged_are_dropped_only_long_after_the_lookback(
    instance: dg.DagsterInstance, standin: SlackStandIn, slack: UnloadSlackResource
) -> None:
    # Runs deleted since Slack took their message: the tag can never be written. A recent one is kept
    # (the run storage may be back next tick); one older than twice the lookback is let go.
    now = tick.now()
    recent, ancient = f"{now - 3600:.6f}", f"{now - 3 * tick.LOOKBACK.total_seconds():.6f}"
    cursor = tick.SensorCursor(untagged={"deleted-recently": recent, "deleted-long-ago": ancient}).dump()
    daemon = Daemon(instance, cursor=cursor)
    assert daemon.tick(slack) == "Nothing to announce."
    assert json.loads(daemon.cursor or "{}")["untagged"] == {"deleted-recently": recent}
